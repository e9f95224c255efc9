"""sockjs.binding without a server: issued keys, and who may use a session once it is open."""

from __future__ import annotations

import pytest

from sockjs.binding import KEY_LENGTH, Binding, Client, KeyIssuer, Refusal

SECRET = b"s" * 32


def scope(query: bytes = b"", origin: bytes | None = None, peer: str = "10.0.0.1") -> dict:
    headers = [(b"origin", origin)] if origin else []
    return {"query_string": query, "headers": headers, "client": [peer, 5000]}


def test_issued_keys_are_recognised_by_every_issuer_with_the_same_secret():
    key = KeyIssuer(SECRET).issue()
    assert len(key) == KEY_LENGTH
    assert KeyIssuer(SECRET).issued(key)
    assert not KeyIssuer(b"t" * 32).issued(key)


@pytest.mark.parametrize("forged", ["", "A" * KEY_LENGTH, "short", "é" * KEY_LENGTH, "A" * (KEY_LENGTH + 1)])
def test_keys_the_server_did_not_issue_are_not_recognised(forged):
    assert not KeyIssuer(SECRET).issued(forged)


def test_client_reads_key_peer_and_origin_from_the_scope():
    client = Client.from_scope(scope(b"key=abc&t=1", b"https://app.example"))
    assert client == Client(key="abc", peer="10.0.0.1", origin="https://app.example")
    assert Client.from_scope({"headers": []}) == Client(key=None, peer=None, origin=None)


def test_a_binding_admits_only_the_openers_key_and_address():
    opener = Client(key="k1", peer="10.0.0.1", origin="https://app.example")
    binding = Binding(opener, bind_peer=True)
    assert binding.refusal(opener) is None
    assert binding.refusal(Client("k2", "10.0.0.1", "https://app.example")) is Refusal.KEY
    assert binding.refusal(Client(None, "10.0.0.1", None)) is Refusal.KEY
    assert binding.refusal(Client("k1", "10.0.0.2", "https://app.example")) is Refusal.PEER
    assert Binding(opener, bind_peer=False).refusal(Client("k1", "10.0.0.2", None)) is None


def test_a_keyless_session_refuses_a_request_with_a_key():
    binding = Binding(Client(None, "10.0.0.1", None), bind_peer=True)
    assert binding.refusal(Client("k1", "10.0.0.1", None)) is Refusal.KEY


def test_the_first_origin_seen_is_pinned_and_requests_without_origin_pass():
    # jsonp-polling: the receiving script tags send no Origin, the form posts do.
    binding = Binding(Client("k", "10.0.0.1", None), bind_peer=True)
    assert binding.refusal(Client("k", "10.0.0.1", "https://app.example")) is None
    assert binding.refusal(Client("k", "10.0.0.1", None)) is None
    assert binding.refusal(Client("k", "10.0.0.1", "https://evil.example")) is Refusal.ORIGIN
    assert binding.refusal(Client("k", "10.0.0.1", "https://app.example")) is None
