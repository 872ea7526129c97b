"""API keys: read keys and admin keys (which may also rescore), compared in constant time."""

import hmac
import os
from dataclasses import dataclass

API_KEYS_ENV = "LEAD_SCORING_API_KEYS"
ADMIN_KEYS_ENV = "LEAD_SCORING_ADMIN_KEYS"


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(key.strip() for key in (text or "").split(",") if key.strip())


@dataclass(frozen=True)
class ApiKeys:
    read: tuple[str, ...]
    admin: tuple[str, ...]

    @classmethod
    def from_env(cls) -> "ApiKeys":
        """``LEAD_SCORING_API_KEYS`` (read) and ``LEAD_SCORING_ADMIN_KEYS`` (read + rescore),
        comma-separated; at least one key must be set."""
        keys = cls(_split(os.environ.get(API_KEYS_ENV)), _split(os.environ.get(ADMIN_KEYS_ENV)))
        if not keys.read and not keys.admin:
            raise ValueError(
                f"no API key: set {API_KEYS_ENV} and/or {ADMIN_KEYS_ENV} (comma-separated)"
            )
        return keys

    def role(self, given: str | None) -> str | None:
        """``admin``, ``read`` or None; every key is compared, in constant time each."""
        if not given:
            return None
        data = given.encode()
        admin = [hmac.compare_digest(data, key.encode()) for key in self.admin]
        read = [hmac.compare_digest(data, key.encode()) for key in self.read]
        return "admin" if any(admin) else "read" if any(read) else None
