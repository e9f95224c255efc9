"""stompengine.conf: one dataclass of every engine setting, its defaults THE defaults, read once per change."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest
from django.core.exceptions import ImproperlyConfigured

from stompengine import conf
from stompengine.conf import DEFAULTS, StompSettings, setting_name, stomp_settings
from stompengine.realtime.limits import SendLimits
from stompengine.stomp.session import SessionLimits
from tests.conftest import REPO


def test_defaults_are_the_session_cores_and_the_limits_defaults():
    assert DEFAULTS.session_limits() == SessionLimits()
    assert DEFAULTS.send_limits() == SendLimits()


def test_settings_are_read_once_and_again_after_a_change(settings):
    first = stomp_settings()
    assert stomp_settings() is first
    settings.STOMP_MAX_SUBSCRIPTIONS = 7
    assert stomp_settings().max_subscriptions == 7
    settings.SOME_OTHER_SETTING = 1  # not the engine's: the settings are not read again
    assert stomp_settings() is stomp_settings()


def test_a_setting_the_project_does_not_define_keeps_its_default(settings):
    del settings.STOMP_DESTINATION_RULES
    assert stomp_settings().destination_rules == DEFAULTS.destination_rules


def test_lists_are_frozen_into_tuples(settings):
    settings.STOMP_DESTINATION_RULES = [["/queue/", "send subscribe"]]
    settings.STOMP_HANDLER_MODULES = ["a.b"]
    assert stomp_settings().destination_rules == (("/queue/", "send subscribe"),)
    assert stomp_settings().handler_modules == ("a.b",)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STOMP_MAX_HEADERS", 2, "STOMP_MAX_HEADERS=2 is below its minimum of 8"),
        ("STOMP_MAX_FRAME_SIZE", "64k", "STOMP_MAX_FRAME_SIZE='64k' is not a int"),
        ("STOMP_SEND_RATE", True, "STOMP_SEND_RATE=True is not a float"),
        ("STOMP_HANDLER_MODULES", "chat.handlers", "STOMP_HANDLER_MODULES='chat.handlers' is not a tuple"),
        ("METRICS_ENABLED", "yes", "METRICS_ENABLED='yes' is not a bool"),
    ],
)
def test_a_value_that_cannot_work_is_refused_naming_the_setting(settings, name, value, message):
    setattr(settings, name, value)
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        stomp_settings()


def test_every_field_has_a_flat_django_setting():
    names = {setting_name(spec) for spec in fields(StompSettings)}
    assert {"STOMP_MAX_FRAME_SIZE", "STOMP_HANDLER_MODULES", "STOMP_AUTHENTICATOR", "REDIS_URL"} <= names
    assert all(name.startswith("STOMP_") for name in names - {"REDIS_URL", "METRICS_ENABLED"})
    assert names == conf._NAMES


README_ROW = re.compile(r"^\| `(STOMP_[A-Z_]+)`(?:, `(STOMP_[A-Z_]+)`)?(?:, `(STOMP_[A-Z_]+)`)? \| ([^|]+) \|", re.M)


def test_the_readme_configuration_table_states_the_engines_defaults():
    """README's rows for STOMP_* settings show stompengine.conf's defaults (no second copy to drift)."""
    rows = {}
    for match in README_ROW.finditer((REPO / "README.md").read_text()):
        names = [name for name in match.groups()[:3] if name]
        values = re.findall(r"`([^`]*)`", match[4])
        if len(values) == len(names):
            rows.update(zip(names, values, strict=True))
    by_name = {setting_name(spec): getattr(DEFAULTS, spec.name) for spec in fields(StompSettings)}
    assert len(rows) >= 25
    for name, shown in rows.items():
        value = by_name[name]
        assert (float(shown) if isinstance(value, float) else shown) == (
            value if isinstance(value, float) else str(value)
        ), name
