"""The one origin matcher: Spring-style patterns, normalisation, and what it refuses."""

import pytest

from chatproject.origins import InvalidOriginPattern, OriginMatcher, normalize_origin


@pytest.mark.parametrize(
    ("patterns", "origin", "allowed"),
    [
        (["https://app.example.com"], "https://app.example.com", True),
        (["https://app.example.com"], "https://APP.example.com", True),
        (["https://app.example.com"], "https://app.example.com:443", True),
        (["https://app.example.com"], "http://app.example.com", False),
        (["https://app.example.com"], "https://app.example.com:8443", False),
        (["https://*.example.com"], "https://a.example.com", True),
        (["https://*.example.com"], "https://a.b.example.com", True),
        (["https://*.example.com"], "https://example.com", False),
        (["https://*.example.com"], "https://a.example.com.evil.com", False),
        (["https://*.example.com"], "https://evilexample.com", False),
        (["http://localhost:*"], "http://localhost", True),
        (["http://localhost:*"], "http://localhost:3000", True),
        (["http://localhost:*"], "http://localhost.evil.com:3000", False),
        (["https://a.com:[8080,8081]"], "https://a.com:8081", True),
        (["https://a.com:[8080,8081]"], "https://a.com", False),
        (["https://a.com:[443,8080]"], "https://a.com", True),
        (["http://[::1]:8000"], "http://[::1]:8000", True),
        (["*"], "https://anything.example", True),
        # A lone star is every origin a client can send (issue 19: SockJS clients on file:// pages).
        (["*"], "null", True),
        (["*"], "test", True),
        (["*"], "", False),
        (["https://*.example.com", "http://localhost:*"], "null", False),
        (["https://*.example.com"], "test", False),
        (["https://app.example.com"], None, False),
        (["https://app.example.com"], "not an origin", False),
        (["https://app.example.com"], "https://app.example.com/path", False),
    ],
)
def test_origin_patterns(patterns, origin, allowed):
    assert OriginMatcher.from_patterns(patterns).allows(origin) is allowed


@pytest.mark.parametrize("bad", ["example.com", "https://", "https://a.com/path", "ftp//x", "https://a.com:port"])
def test_invalid_patterns_are_refused_with_an_example(bad):
    with pytest.raises(InvalidOriginPattern, match="scheme://host"):
        OriginMatcher.from_patterns([bad])


def test_normalize_drops_default_ports_and_lowercases():
    assert normalize_origin("HTTPS://Example.COM:443") == "https://example.com"
    assert normalize_origin("http://example.com:8080/") == "http://example.com:8080"
    assert normalize_origin("https://user:pw@example.com") is None


def test_allows_any_only_for_a_lone_star():
    assert OriginMatcher.from_patterns(["*"]).allows_any
    assert not OriginMatcher.from_patterns(["https://*.example.com"]).allows_any
