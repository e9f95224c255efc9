"""Attachment fixtures: the attachments storage on the file system or on a real S3 API server (moto)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from scripts import s3server
from tests.conftest import OUTPUT


@pytest.fixture(scope="session")
def s3_server() -> Iterator[s3server.S3Server]:
    """moto's S3 API server on a free 127.0.0.1 port for the session, stopped by PID."""
    server = s3server.start(OUTPUT / "moto-s3.log")
    try:
        yield server
    finally:
        server.stop()


def storage_settings(settings, backend: str, **options) -> None:
    storages = dict(settings.STORAGES)
    storages["attachments"] = {"BACKEND": backend, "OPTIONS": options}
    settings.STORAGES = storages  # setting_changed resets django.core.files.storage.storages


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.live)])
def storage_kind(request, settings, tmp_path) -> str:
    """Every test that takes this runs against the file system and against the S3 API server."""
    settings.API_ORIGIN = "http://testserver"
    if request.param == "filesystem":
        settings.ATTACHMENTS_STORAGE = "filesystem"
        storage_settings(
            settings,
            "django.core.files.storage.FileSystemStorage",
            location=str(tmp_path / "attachments"),
            base_url="/-/not-public/",
        )
    else:
        server = request.getfixturevalue("s3_server")
        bucket = f"test-{secrets.token_hex(6)}"
        s3server.bucket_create(server.endpoint, bucket)
        settings.ATTACHMENTS_STORAGE = "s3"
        storage_settings(
            settings,
            "storages.backends.s3.S3Storage",
            bucket_name=bucket,
            endpoint_url=server.endpoint,
            region_name=s3server.REGION,
            access_key=s3server.ACCESS_KEY,
            secret_key=s3server.SECRET_KEY,
            addressing_style="path",
            signature_version="s3v4",
            default_acl=None,
            querystring_auth=True,
            file_overwrite=False,
        )
    return request.param


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def room(alice):
    """A private room of alice's."""
    from chat import services

    return services.room_create(creator=alice, name="Files", is_private=True)
