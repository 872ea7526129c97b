"""Opaque keyset cursors: the sort key and ``contact_id`` of a page's last row, and the sort
(absent for the default, by score), HMAC-signed.

The secret comes from ``LEAD_SCORING_API_CURSOR_SECRET``; ``lead-scoring serve`` makes a random
one per server start when it is unset (shared by its workers), so cursors do not outlive a
restart. A cursor that was altered, truncated or signed with another secret is refused.
"""

import base64
import hashlib
import hmac
import json

CURSOR_SECRET_ENV = "LEAD_SCORING_API_CURSOR_SECRET"
_SIGNATURE_BYTES = 16


class BadCursor(ValueError):
    """The cursor is not one this server signed."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorSigner:
    def __init__(self, secret: str):
        if not secret:
            raise ValueError(f"an empty cursor secret; set {CURSOR_SECRET_ENV}")
        self._key = secret.encode()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, value: float, contact_id: int, sort: str = "score") -> str:
        key = [value, contact_id] if sort == "score" else [value, contact_id, sort]
        payload = json.dumps(key, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, cursor: str) -> tuple[float, int, str]:
        """The sort key, contact id and sort of a cursor this server signed."""
        try:
            payload_text, signature_text = cursor.split(".")
            payload, signature = _unb64(payload_text), _unb64(signature_text)
        except ValueError:
            raise BadCursor("malformed cursor: pass next_cursor from the previous page") from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise BadCursor(
                "invalid cursor signature: it was altered or comes from another "
                "server start; begin again without a cursor"
            )
        value, contact_id, *sort = json.loads(payload)
        return value, int(contact_id), sort[0] if sort else "score"
