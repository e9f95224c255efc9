"""Byte-level tests of the SockJS framing (sockjs/protocol.py): no server, no event loop."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sockjs import protocol

# The characters the conformance suite checks the server escapes (sockjs-protocol 0.3.3, "JSON
# Unicode Encoding"), restricted as the suite does to code points from 255 up.
SERVER_ESCAPED = re.compile("[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff]")


def test_open_and_heartbeat_frames_are_single_letters():
    assert protocol.OPEN_FRAME == "o"
    assert protocol.HEARTBEAT_FRAME == "h"


def test_message_frame_is_a_json_array_without_spaces():
    assert protocol.message_frame(["a"]) == 'a["a"]'
    assert protocol.message_frame(["a", "b c"]) == 'a["a","b c"]'
    assert protocol.message_frame([]) == "a[]"


def test_close_frame_has_code_and_quoted_reason():
    assert protocol.close_frame(3000, "Go away!") == 'c[3000,"Go away!"]'
    assert protocol.close_frame(*protocol.ANOTHER_CONNECTION) == 'c[2010,"Another connection still open"]'
    assert protocol.is_close_frame('c[3000,"Go away!"]')
    assert not protocol.is_close_frame('a["c"]')


def test_quote_escapes_every_character_the_protocol_names_in_lower_case_hex():
    chars = "".join(chr(i) for i in range(255, 65536) if SERVER_ESCAPED.match(chr(i)))
    expected = '"' + "".join(f"\\u{ord(c):04x}" for c in chars) + '"'
    assert protocol.quote(chars) == expected


def test_quote_escapes_control_characters_and_lone_surrogates():
    assert protocol.quote("\x00\n\r\x1f") == '"\\u0000\\n\\r\\u001f"'
    assert protocol.quote("\ud800x\udfff") == '"\\ud800x\\udfff"'
    # The result is always encodable: no raw surrogate survives.
    protocol.quote("\udc80").encode("utf-8")


def test_quote_leaves_ordinary_unicode_raw():
    assert protocol.quote("안녕 é €") == '"안녕 é €"'


@given(st.lists(st.text()))
def test_message_frame_round_trips_through_json(messages):
    frame = protocol.message_frame(messages)
    assert frame.startswith("a")
    assert json.loads(frame[1:]) == messages
    assert not SERVER_ESCAPED.search(frame)
    assert "\n" not in frame and "\r" not in frame


@given(st.lists(st.text().filter(lambda t: not any("\ud800" <= c <= "\udfff" for c in t))))
def test_xhr_send_decodes_what_a_client_encodes(messages):
    body = json.dumps(messages).encode("utf-8")
    assert protocol.decode_xhr_send(body) == messages


@pytest.mark.parametrize("body", [b"", None])
def test_xhr_send_without_body_is_payload_expected(body):
    with pytest.raises(protocol.PayloadError, match=re.escape("Payload expected.")):
        protocol.decode_xhr_send(body or b"")


@pytest.mark.parametrize("body", [b'["x', b"[NaN]", b"\xff\xfe", b"{", b"[1,]"])
def test_xhr_send_with_broken_json_is_broken_json_encoding(body):
    with pytest.raises(protocol.PayloadError, match=re.escape("Broken JSON encoding.")):
        protocol.decode_xhr_send(body)


@pytest.mark.parametrize("body", [b'"x"', b"{}", b"1", b"null", b"[1]", b'["a", null]'])
def test_xhr_send_with_json_that_is_no_string_array_is_payload_expected(body):
    with pytest.raises(protocol.PayloadError, match=re.escape("Payload expected.")):
        protocol.decode_xhr_send(body)


@given(st.binary())
def test_xhr_send_garbage_either_decodes_to_strings_or_raises_payload_error(body):
    try:
        messages = protocol.decode_xhr_send(body)
    except protocol.PayloadError as exc:
        assert str(exc) in (protocol.PAYLOAD_EXPECTED, protocol.BROKEN_JSON)
    else:
        assert all(isinstance(m, str) for m in messages)


@given(st.text())
def test_websocket_garbage_either_decodes_to_strings_or_raises_payload_error(text):
    try:
        messages = protocol.decode_websocket(text)
    except protocol.PayloadError as exc:
        assert str(exc) in (protocol.PAYLOAD_EXPECTED, protocol.BROKEN_JSON)
    else:
        assert all(isinstance(m, str) for m in messages)


def test_websocket_accepts_an_array_or_a_single_string_and_ignores_empty_frames():
    assert protocol.decode_websocket('["a","b"]') == ["a", "b"]
    assert protocol.decode_websocket('"a"') == ["a"]
    assert protocol.decode_websocket("") == []
    with pytest.raises(protocol.PayloadError, match="Broken JSON"):
        protocol.decode_websocket('["a')


FORM = "application/x-www-form-urlencoded"


def test_jsonp_send_reads_field_d_of_a_form_or_the_raw_body():
    assert protocol.decode_jsonp_send(b"d=%5B%22x%22%5D", FORM) == ["x"]
    assert protocol.decode_jsonp_send(b'["%61bc"]', "text/plain") == ["%61bc"]
    assert protocol.decode_jsonp_send(b'["a"]', "") == ["a"]


@pytest.mark.parametrize("body", [b"", b"d=", b"p=p"])
def test_jsonp_send_without_d_is_payload_expected(body):
    with pytest.raises(protocol.PayloadError, match=re.escape("Payload expected.")):
        protocol.decode_jsonp_send(body, FORM)


def test_jsonp_send_with_broken_d_is_broken_json_encoding():
    with pytest.raises(protocol.PayloadError, match=re.escape("Broken JSON encoding.")):
        protocol.decode_jsonp_send(b"d=%5B%22x", FORM)


def test_callback_is_read_from_c_or_callback():
    assert protocol.validate_callback({"c": ["callback"]}) == "callback"
    assert protocol.validate_callback({"callback": ["a.b_c-1"]}) == "a.b_c-1"


def test_missing_callback_is_required_error():
    with pytest.raises(protocol.CallbackError, match=re.escape('"callback" parameter required')):
        protocol.validate_callback({})


@pytest.mark.parametrize("name", ["a(b)", "x;alert(1)", "a b", "<script>", "x" * 33, ""])
def test_unsafe_or_long_callback_is_invalid(name):
    with pytest.raises(protocol.CallbackError):
        protocol.validate_callback({"c": [name]})


def test_xhr_wrapper_and_streaming_prelude():
    assert protocol.wrap_xhr("o") == "o\n"
    assert protocol.XHR_STREAMING_PRELUDE == "h" * 2048 + "\n"


def test_eventsource_wrapper_and_prelude():
    assert protocol.EVENTSOURCE_PRELUDE == "\r\n"
    assert protocol.wrap_eventsource('a["x"]') == 'data: a["x"]\r\n\r\n'


def test_jsonp_wrapper_calls_the_callback_with_the_frame_as_a_string():
    assert protocol.wrap_jsonp("o", "callback") == '/**/callback("o");\r\n'
    assert protocol.wrap_jsonp('a["x"]', "x") == '/**/x("a[\\"x\\"]");\r\n'


def test_htmlfile_wrapper_and_prelude():
    assert protocol.wrap_htmlfile("o") == '<script>\np("o");\n</script>\r\n'
    assert protocol.wrap_htmlfile('a["x"]') == '<script>\np("a[\\"x\\"]");\n</script>\r\n'
    prelude = protocol.htmlfile_prelude("callback")
    assert len(prelude) > 1024
    assert "var c = parent.callback;" in prelude
    assert prelude.endswith("\r\n\r\n")


def test_htmlfile_wrapper_cannot_end_its_script_block():
    wrapped = protocol.wrap_htmlfile(protocol.message_frame(["</script><script>alert(1)</script>"]))
    assert "</script>" not in wrapped[: -len("</script>\r\n")]
    # Still the same JavaScript string once evaluated.
    literal = wrapped[len("<script>\np(") : -len(");\n</script>\r\n")]
    assert json.loads(literal) == protocol.message_frame(["</script><script>alert(1)</script>"])


def test_iframe_page_embeds_the_client_url_and_has_a_stable_etag():
    page = protocol.IframePage.build("/static/vendor/sockjs.min.js")
    assert b'<script src="/static/vendor/sockjs.min.js"></script>' in page.body
    assert page.etag == protocol.IframePage.build("/static/vendor/sockjs.min.js").etag
    assert page.etag != protocol.IframePage.build("https://cdn.example/sockjs.js").etag
    assert page.etag.startswith('"') and page.etag.endswith('"')


def test_iframe_page_escapes_the_client_url_attribute():
    page = protocol.IframePage.build('https://x/"><script>')
    assert b'"><script>' not in page.body


def test_info_reports_capabilities_and_fresh_entropy():
    first = json.loads(protocol.info(websocket=True, cookie_needed=False))
    second = json.loads(protocol.info(websocket=False, cookie_needed=True))
    assert first["websocket"] is True and first["cookie_needed"] is False
    assert second["websocket"] is False and second["cookie_needed"] is True
    assert first["origins"] == ["*:*"]
    assert 0 <= first["entropy"] < 2**32


def test_session_ids_in_urls_are_masked_with_a_stable_one_way_tag():
    line = '127.0.0.1:1 - - [x] "POST /ws/123/0123456789abcdef0123456789abcdef/xhr_send?key=k" 204 -'
    masked = protocol.redact_session_path(line)
    tag = protocol.session_fingerprint("0123456789abcdef0123456789abcdef")
    assert masked == f'127.0.0.1:1 - - [x] "POST /ws/123/[redacted:{tag}]/xhr_send?key=k" 204 -'
    assert protocol.redact_session_path(masked) == masked  # masking twice changes nothing
    assert protocol.redact_session_path("WSCONNECT /sockjs-test/echo/1/abc/websocket").endswith(
        f"/1/[redacted:{protocol.session_fingerprint('abc')}]/websocket"
    )
    for untouched in ("GET /ws/info?t=1", "GET /ws/iframe.html", "GET /api/rooms/general/messages/"):
        assert protocol.redact_session_path(untouched) == untouched
