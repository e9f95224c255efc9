"""Helpers of the observability tests: a chat across two workers, read a /metrics page, sum a metric."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rest_framework_simplejwt.tokens import AccessToken

from tests.live.raw_stomp import connect


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of ``url``/metrics by (name, labels)."""
    response = httpx.get(f"{url}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (n, ls), value in samples.items() if n == name and wanted <= ls)


def chat_across(one, two, sender, receiver, topic: str, messages: int = 5) -> tuple:
    """``sender`` on worker ``one`` and ``receiver`` on ``two`` both subscribe to ``topic``; the sender SENDs
    ``messages`` with receipts and both see every one. Returns the two open clients (the caller closes them)."""
    here = connect(one.ws_url, str(AccessToken.for_user(sender)))
    there = connect(two.ws_url, str(AccessToken.for_user(receiver)))
    for client in (here, there):
        client.send("SUBSCRIBE", id="1", destination=topic, receipt="s")
        assert client.read_until(lambda f: f.command == "RECEIPT", "subscribed") is not None
    for n in range(messages):
        here.send("SEND", f"m{n}".encode(), destination=topic, receipt=f"r{n}")
    for client in (here, there):
        assert client.read_until(lambda f, c=client: [x.command for x in c.frames].count("MESSAGE") == messages, "all")
    return here, there
