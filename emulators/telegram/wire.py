"""The Bot API wire format: error replies, typed parameters from requests, raw responses."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import BodyPartReader, ClientResponse, MultipartReader, web


class ApiError(Exception):
    """A Bot API error reply; ``status`` doubles as HTTP status and ``error_code``."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad(description: str) -> ApiError:
    """A 400 with Telegram's "Bad Request: " prefix."""
    return ApiError(400, f"Bad Request: {description}")


# Form fields arrive as strings; these tell us how to decode them for recording/handling.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "allowed_updates",
        "commands",
        "scope",
        "link_preview_options",
        "reply_parameters",
        "message_ids",
        "media",
        "menu_button",
        "rights",
    }
)
_INT_FIELDS = frozenset(
    {
        "chat_id",
        "from_chat_id",
        "message_id",
        "message_thread_id",
        "reply_to_message_id",
        "offset",
        "limit",
        "timeout",
        "cache_time",
        "user_id",
        "max_connections",
        "until_date",
    }
)
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "allow_sending_without_reply",
        "disable_web_page_preview",
        "show_alert",
        "drop_pending_updates",
        "for_channels",
        "allow_paid_broadcast",
    }
)


def json_response(payload: dict[str, Any], status: int) -> web.Response:
    return web.Response(
        text=json.dumps(payload, ensure_ascii=False),
        status=status,
        content_type="application/json",
    )


def drop(request: web.Request) -> web.Response:
    """Close the socket so the client sees a disconnect instead of a response."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=204)


async def read_webhook_reply(response: ClientResponse) -> dict[str, Any] | None:
    """Parse a webhook response body: JSON, or multipart form as aiogram sends it."""
    if response.content_type.startswith("multipart/"):
        fields: dict[str, Any] = {}
        reader = MultipartReader(response.headers, response.content)
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name:
                fields[part.name] = await part.text()
        return fields
    body = await response.read()
    try:
        reply = json.loads(body) if body.strip() else None
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def _decode_value(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name in _JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            if name == "reply_markup":
                raise bad("can't parse reply keyboard markup JSON object") from None
            raise bad(f"can't parse {name} JSON object") from None
    if name in _INT_FIELDS and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    if name in _BOOL_FIELDS and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return value


def decode_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Typed parameters from form strings (aiogram JSON-encodes nested objects)."""
    return {name: _decode_value(name, value) for name, value in raw.items()}


async def read_params(request: web.Request) -> dict[str, Any]:
    """Query string + JSON, urlencoded or multipart body, like the real Bot API accepts."""
    raw: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad("can't parse JSON request body") from None
            if not isinstance(body, dict):
                raise bad("request body must be a JSON object")
            raw.update(body)
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    raw[key] = value
                else:  # uploads are not emulated; keep a marker so the call is still recorded
                    raw[key] = f"<file {getattr(value, 'filename', key)}>"
    return decode_params(raw)
