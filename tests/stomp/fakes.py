"""Stand-ins for an authenticated user, shared by the connection tests (no database needed)."""

from dataclasses import dataclass


@dataclass
class FakeUser:
    pk: int
    username: str

    def get_username(self) -> str:
        return self.username


@dataclass
class Authenticated:
    user: FakeUser
    expires_at: object
