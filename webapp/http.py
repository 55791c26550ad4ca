"""JSON errors and request parsing that every Mini App route shares."""

from __future__ import annotations

import json
from datetime import time
from typing import Any

from aiohttp import web

from services.plans import ActionRejected
from telegram_ui.texts import rejection_text

MAX_ID = 2**63 - 1
USER_KEY = web.RequestKey("miniapp_user", int)

_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    503: web.HTTPServiceUnavailable,
}


def error(status: int, message: str, **extra: Any) -> web.HTTPException:
    body = json.dumps({"error": message, **extra})
    return _ERRORS[status](text=body, content_type="application/json")


def refusal(err: ActionRejected) -> web.HTTPException:
    """The plan said no: the chat's own words ("Already handled…" for a stale tap).

    Accepted but no worker took it in time: 202, it applies when one is back. Temporal
    unreachable, or too busy to take it now (not sent): 503. A refusal by the workflow: 409.
    """
    if err.pending:
        return web.HTTPAccepted(
            text=json.dumps({"message": rejection_text(err), "pending": True}),
            content_type="application/json",
        )
    if err.unreachable or err.busy:
        return error(503, rejection_text(err))
    return error(
        409,
        rejection_text(err),
        already_handled=err.already_handled,
        kind=err.kind.value if err.kind else None,
    )


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise error(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise error(400, "body must be a JSON object")
    return body


def int_id(value: Any, what: str, *, status: int = 400) -> int:
    """An id from the client: an int within int64, else a clear refusal."""
    if isinstance(value, bool):
        raise error(status, f"{what} must be a number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise error(status, f"{what} must be a number") from None
    if not 1 <= number <= MAX_ID:
        raise error(status, f"{what} is out of range")
    return number


def lead_id(request: web.Request) -> int:
    """The {lead_id} of the path; anything else is a 404, like a lead that isn't yours."""
    return int_id(request.match_info["lead_id"], "lead id", status=404)


def hhmm(value: Any, what: str) -> time:
    try:
        hours, minutes = str(value).split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise error(400, f"{what} must look like 09:00") from None
