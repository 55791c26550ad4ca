"""Sign-in by Telegram: initData validation and the short-lived session token.

initData is checked exactly as Telegram specifies for Mini Apps
(core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app): the
data-check-string is every field but `hash`, sorted by key, as `key=value` joined by
"\\n"; the secret key is HMAC-SHA256 of the bot token keyed with "WebAppData"; the hash
is the hex HMAC-SHA256 of the data-check-string with that key, compared in constant time.
A stale `auth_date` is refused, so a leaked initData stops working.

The session token is an HS256 JWT (RFC 7519) built with hmac, so no dependency: its
claims are the ones the RLS policies read (`role: authenticated`, `telegram_id`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

# A client clock a little ahead of ours is fine; a date far in the future is forged.
CLOCK_SKEW_SECONDS = 60
MAX_INIT_DATA_BYTES = 8192
ROLE = "authenticated"
_JWT_HEADER = {"alg": "HS256", "typ": "JWT"}


class AuthError(Exception):
    """Sign-in refused; the message says why (shown to the client with a 401)."""


@dataclass(frozen=True)
class TelegramUser:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


def secret_key(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def sign_init_data(fields: dict[str, str], bot_token: str) -> str:
    """initData as Telegram would send it (for the dev web chat and tests)."""
    from urllib.parse import urlencode

    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
    digest = hmac.new(secret_key(bot_token), check.encode(), hashlib.sha256).hexdigest()
    return urlencode({**fields, "hash": digest})


def validate_init_data(
    init_data: str, bot_token: str, max_age_seconds: float, *, now: float | None = None
) -> TelegramUser:
    """The signed-in Telegram user, or AuthError (malformed, forged, stale, no user)."""
    if not init_data or len(init_data) > MAX_INIT_DATA_BYTES:
        raise AuthError("initData is missing or too long")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise AuthError("initData is malformed") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise AuthError("initData repeats a field")
    received = fields.pop("hash", "")
    check = "\n".join(f"{k}={fields[k]}" for k in sorted(fields))
    expected = hmac.new(secret_key(bot_token), check.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), received.encode()):
        raise AuthError("initData signature is invalid")

    try:
        auth_date = int(fields["auth_date"])
    except (KeyError, ValueError):
        raise AuthError("initData has no valid auth_date") from None
    now = time.time() if now is None else now
    if auth_date > now + CLOCK_SKEW_SECONDS:
        raise AuthError("initData auth_date is in the future")
    if now - auth_date > max_age_seconds:
        raise AuthError("initData is too old; open the app again from Telegram")

    try:
        user = json.loads(fields["user"])
        user_id = user["id"]
    except (KeyError, ValueError, TypeError):
        raise AuthError("initData has no user") from None
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 0 < user_id < 2**63:
        raise AuthError("initData user id is invalid")
    return TelegramUser(
        id=user_id,
        first_name=str(user.get("first_name") or ""),
        last_name=user.get("last_name"),
        username=user.get("username"),
        language_code=user.get("language_code"),
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hs256(secret: bytes, signing_input: str) -> str:
    return _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def issue_token(
    telegram_id: int, secret: bytes, ttl_seconds: int, *, now: float | None = None
) -> str:
    """A session JWT whose claims the RLS policies read."""
    issued = int(time.time() if now is None else now)
    claims = {
        "role": ROLE,
        "telegram_id": str(telegram_id),
        "sub": str(telegram_id),
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    head = _b64(json.dumps(_JWT_HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{head}.{body}.{_hs256(secret, f'{head}.{body}')}"


def verify_token(token: str, secret: bytes, *, now: float | None = None) -> int:
    """The telegram_id of a valid, unexpired session token; AuthError otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("session token is malformed")
    head, body, signature = parts
    if not hmac.compare_digest(_hs256(secret, f"{head}.{body}").encode(), signature.encode()):
        raise AuthError("session token signature is invalid")
    try:
        header: dict[str, Any] = json.loads(_unb64(head))
        claims: dict[str, Any] = json.loads(_unb64(body))
        expires = int(claims["exp"])
        telegram_id = int(claims["telegram_id"])
    except (ValueError, KeyError, TypeError):
        raise AuthError("session token is malformed") from None
    if header.get("alg") != "HS256" or claims.get("role") != ROLE:
        raise AuthError("session token is not a Mini App session")
    if (time.time() if now is None else now) >= expires:
        raise AuthError("session expired")
    return telegram_id


def session_secret(configured: str | None, bot_token: str) -> bytes:
    """The configured secret, or one derived from the bot token (same on every replica)."""
    if configured:
        return configured.encode()
    return hmac.new(bot_token.encode(), b"leadpilot mini app session", hashlib.sha256).digest()
