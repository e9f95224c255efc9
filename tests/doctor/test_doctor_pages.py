"""The doctor's sans-IO page and script analysis: execution order, top-level declarations, URL literals."""

from __future__ import annotations

from doctor.model import CheckResult, Finding, Status
from doctor.net import parse_stomp_frame, stomp_connect_frame, websocket_url
from doctor.pages import (
    client_libraries_used,
    execution_order,
    insecure_websocket_urls,
    parse_page,
    relative_sockjs_urls,
    top_level_declarations,
)


def names(scripts) -> list[str]:
    return [s.name for s in scripts]


def test_deferred_scripts_run_after_blocking_ones_in_document_order():
    page = parse_page(
        '<script defer src="/js/global.js"></script><script src="/js/chat.js"></script>'
        '<script type="module" src="/js/m.js"></script><script async src="/js/a.js"></script>',
        "https://www.example.com/rooms/x/",
    )
    ordered, unordered = execution_order(page.scripts)
    assert names(ordered) == ["chat.js", "global.js", "m.js"]
    assert names(unordered) == ["a.js"]
    assert page.scripts[0].src == "https://www.example.com/js/global.js"


def test_page_reads_meta_stylesheets_and_the_upgrade_insecure_requests_policy():
    page = parse_page(
        '<meta http-equiv="Content-Security-Policy" content="upgrade-insecure-requests">'
        '<meta name="api-origin" content="https://api.example.com"><link rel="stylesheet" href="http://cdn/x.css">',
        "https://www.example.com/",
    )
    assert page.upgrades_insecure_requests
    assert page.meta["api-origin"] == "https://api.example.com"
    assert page.stylesheets == ["http://cdn/x.css"]


def test_top_level_declarations_skip_functions_strings_comments_and_regexes():
    source = """
    // let commented = 1;
    let nickname = "a { b";
    const token = /}/.test(x) ? 1 : 2;
    var host = `${"{"}`;
    function connect() { let inner = 1; }
    class Client {}
    (function () { const hidden = 1; })();
    /* const blocked = 2; */
    """
    assert top_level_declarations(source) == {
        "nickname": "let",
        "token": "const",
        "host": "var",
        "connect": "function",
        "Client": "class",
    }


def test_relative_sockjs_urls_are_found_and_absolute_ones_are_not():
    assert relative_sockjs_urls("new SockJS('/chat'); new SockJS(\"ws\")") == ["/chat", "ws"]
    assert relative_sockjs_urls("new SockJS(host + '/chat'); new SockJS('https://api/ws')") == []


def test_plain_ws_literals_and_client_library_use_are_found():
    assert insecure_websocket_urls("const u = 'ws://api.example.com/ws'; const v = 'wss://ok';") == [
        "ws://api.example.com/ws"
    ]
    assert client_libraries_used("const c = Stomp.over(new SockJS(u));") == {"SockJS", "STOMP"}
    assert client_libraries_used("window.Chat.ready") == set()


def test_stomp_frames_round_trip_and_heartbeats_are_skipped():
    frame = stomp_connect_frame("api.example.com", "abc")
    assert frame.startswith("CONNECT\naccept-version:1.2,1.1,1.0\nhost:api.example.com")
    assert "Authorization:Bearer abc" in frame and frame.endswith("\n\n\x00")
    assert "Authorization" not in stomp_connect_frame("h", None)
    assert parse_stomp_frame("\n") is None
    assert parse_stomp_frame("ERROR\nmessage:Unauthorized\n\n\x00") == ("ERROR", (("message", "Unauthorized"),))


def test_websocket_url_follows_the_api_scheme():
    assert websocket_url("https://api.example.com", "/ws/websocket") == "wss://api.example.com/ws/websocket"
    assert websocket_url("http://127.0.0.1:8000", "ws/websocket") == "ws://127.0.0.1:8000/ws/websocket"


def test_a_check_line_shows_its_worst_finding_and_an_all_pass_line_its_summary():
    mixed = CheckResult.from_findings(
        "x", "X", [Finding(Status.PASS, "a"), Finding(Status.FAIL, "broken", "fix it"), Finding(Status.WARN, "w")]
    )
    assert (mixed.status, mixed.sentence()) == (Status.FAIL, "broken: fix it")
    assert mixed.details == ["PASS a", "WARN w"]
    assert (
        CheckResult.from_findings("x", "X", [Finding(Status.PASS, "a"), Finding(Status.PASS, "summary")]).cause
        == "summary"
    )


def test_hashed_static_names_still_identify_global_js():
    from doctor.checks.common import unhashed

    # ManifestStaticFilesStorage (DEBUG=0 behind nginx) serves global.<12 hex>.js.
    assert unhashed("global.fb03060d61bd.js") == "global.js"
    assert unhashed("stomp.umd.min.0123abcd4567.js") == "stomp.umd.min.js"
    assert unhashed("global.js") == "global.js"
    assert unhashed("chat.helpers.js") == "chat.helpers.js"
