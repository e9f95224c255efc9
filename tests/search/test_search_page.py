"""The search page: the doctor's script-order check passes on it (client libraries, global.js, then
search.js; no global declared twice), and search.js declares no globals."""

from __future__ import annotations

import pytest

from doctor import DoctorOptions, Status, run
from doctor.pages import top_level_declarations
from tests.conftest import REPO, TEST_PASSWORD


@pytest.mark.live
def test_the_doctor_finds_the_search_page_scripts_in_order(daphne_factory, make_user):
    from chat import services

    user = make_user("doctor-user")
    services.room_create(creator=user, name="Doctor's room", slug="doctor-room")
    api = daphne_factory()
    frontend = daphne_factory(API_ORIGIN=api.url)
    pages = (*DoctorOptions(frontend="", api="").page_paths, "/search/")  # the project's pages and this one
    options = DoctorOptions(frontend=frontend.url, api=api.url, username="doctor-user", password=TEST_PASSWORD,
                            timeout=5.0, page_paths=pages)  # fmt: skip
    (result,) = [r for r in run(options) if r.id == "script-order"]
    assert result.status is Status.PASS, result.sentence()
    assert "global.js → notifications.js → search.js" in result.sentence(), result.sentence()


def test_search_js_declares_no_global():
    assert top_level_declarations((REPO / "static" / "js" / "search.js").read_text()) == {}


@pytest.mark.django_db
def test_the_search_page_needs_a_login_and_has_no_inline_script(client, make_user):
    assert client.get("/search/").status_code == 302
    client.force_login(make_user("ann"))
    page = client.get("/search/", {"q": "<script>x</script>"}).content.decode()
    assert 'src="/static/js/search.js"' in page and "<script>x" not in page
    assert page.count("<script") == page.count("<script defer src=")
