"""The doctor against a purpose-built deployment: all PASS when it is right, and exactly one named check
FAILs, with its fix, for each way it is broken."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from doctor import DoctorOptions, Status, run
from tests.doctor.fake_deployment import PASSWORD, USERNAME, deployment

pytestmark = pytest.mark.live


def doctor(dep, **overrides) -> dict:
    options = DoctorOptions(
        frontend=dep.frontend, api=dep.api, username=USERNAME, password=PASSWORD, timeout=3.0, **overrides
    )
    return {r.id: r for r in run(options)}


def failing(results: dict) -> dict[str, str]:
    return {cid: r.sentence() for cid, r in results.items() if r.status is Status.FAIL}


def test_correct_deployment_passes_every_check():
    with deployment() as dep:
        results = doctor(dep)
    assert {cid: (r.status, r.sentence()) for cid, r in results.items() if r.status is not Status.PASS} == {}


def test_correct_https_deployment_passes_with_a_self_signed_certificate_only_warned(tmp_path):
    with deployment(https=True, tmp_path=tmp_path) as dep:
        results = doctor(dep, insecure=True)
    assert failing(results) == {}
    assert results["tls-clock"].status is Status.WARN
    assert "not trusted" in results["tls-clock"].cause and "--insecure" in results["tls-clock"].cause
    assert results["mixed-content"].status is Status.PASS


@pytest.mark.parametrize(
    ("breakage", "check", "cause", "fix"),
    [
        ("script_order", "script-order", "chat.js runs before global.js", "then global.js, then the page scripts"),
        ("relative_sockjs", "sockjs-info", "chat.js creates new SockJS('/ws')", "use new SockJS(API_ORIGIN + '/ws')"),
        ("info_404", "sockjs-info", "answered 404, so the SockJS URL is relative", "use API_ORIGIN + '/ws'"),
        ("cors_missing", "cors", "without Access-Control-Allow-Origin", "to the API's allowed origin patterns"),
        ("info_login_redirect", "sockjs-info", "redirects to the login page", "exempt /ws/ from it"),
        ("sse_text_plain", "sse", "text/plain", "Content-Type: text/event-stream"),
        ("stomp_anonymous", "websocket", "without credentials was answered CONNECTED", "answer ERROR"),
        ("library_missing", "client-libraries", "chat.js uses SockJS but", "must load the client libraries itself"),
        ("redis_down", "readiness", "answered 503, not ready (redis: ConnectionError: refused)", "check REDIS_URL"),
    ],
)
def test_each_broken_deployment_fails_exactly_the_check_that_names_it(breakage, check, cause, fix):
    with deployment(breakage) as dep:
        results = doctor(dep)
    assert list(failing(results)) == [check], failing(results)
    assert cause in results[check].cause
    assert fix in results[check].fix


def test_a_global_declared_in_two_scripts_warns_and_fails_nothing():
    with deployment("duplicate_global") as dep:
        results = doctor(dep)
    assert failing(results) == {}
    assert results["script-order"].status is Status.WARN
    assert "'nickname' is declared by global.js (let) and chat.js (let)" in results["script-order"].cause
    assert "SyntaxError" in results["script-order"].cause


def test_http_api_under_an_https_frontend_fails_mixed_content(tmp_path):
    with deployment("http_api", https=True, tmp_path=tmp_path) as dep:
        results = doctor(dep, insecure=True)
    assert list(failing(results)) == ["mixed-content"], failing(results)
    assert "serve the API over HTTPS and set API_ORIGIN=https://" in results["mixed-content"].fix


def test_command_prints_one_line_per_check_and_exits_nonzero_on_failure():
    with deployment("stomp_anonymous") as dep:
        out, err = _Capture(), _Capture()
        with pytest.raises(CommandError) as raised:
            call_command(
                "doctor",
                frontend=dep.frontend,
                api=dep.api,
                username=USERNAME,
                password=PASSWORD,
                timeout=3,
                stdout=out,
                stderr=err,
            )
    assert raised.value.returncode == 1
    lines = out.getvalue().splitlines()
    assert any(line.startswith("FAIL  websocket") and "answer ERROR" in line for line in lines)
    assert sum(line.startswith(("PASS  ", "WARN  ", "FAIL  ")) for line in lines) == 10
    assert "[10/10]" in err.getvalue()
    assert PASSWORD not in out.getvalue() + err.getvalue()


def test_command_json_report_for_ci():
    with deployment() as dep:
        out = _Capture()
        call_command(
            "doctor",
            frontend=dep.frontend,
            api=dep.api,
            username=USERNAME,
            password=PASSWORD,
            timeout=3,
            json=True,
            stdout=out,
            stderr=_Capture(),
        )
    report = json.loads(out.getvalue())
    assert report["ok"] is True
    assert [c["id"] for c in report["checks"]][:3] == ["script-order", "client-libraries", "sockjs-info"]
    assert all(c["status"] == "PASS" for c in report["checks"])


class _Capture:
    """A text sink for call_command's stdout/stderr."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def flush(self) -> None:
        pass

    def getvalue(self) -> str:
        return "".join(self.parts)


def test_a_deployment_without_readyz_passes_the_readiness_check():
    with deployment("readyz_absent") as dep:
        results = doctor(dep)
    assert results["readiness"].status is Status.PASS
    assert "does not expose /readyz/" in results["readiness"].cause
