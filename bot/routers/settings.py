"""/settings, /timezone, /window, /workdays, /pause, /resume.

A change is validated with the workflow's own `Schedule` model before anything is
saved, then stored in `users` and pushed to every running plan (`set_schedule`), so
pending reminders move too, not only future plans.
"""

from __future__ import annotations

import difflib
import re
from datetime import time
from zoneinfo import available_timezones

import asyncpg
from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from pydantic import ValidationError

from bot.bulk import BulkRunner
from services.plans import PlanService, user_schedule
from storage.bulk_jobs import BulkAction, BulkJobRepository
from storage.models import User
from storage.users import UserRepository
from telegram_ui.texts import (
    APPLYING,
    RESUMING,
    TIMEZONE_USAGE,
    WINDOW_USAGE,
    WORKDAYS_USAGE,
    pause_span,
    pause_usage,
    pausing,
    settings_problem,
    settings_saved,
    settings_text,
    unknown_timezone,
)
from workflows.models import Schedule

OFFSET_RE = re.compile(r"^(?:utc|gmt)?([+-])(\d{1,2})(?::?(\d{2}))?$")
WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*$")
MAX_PAUSE_DAYS = 365


def _problem(err: ValidationError) -> str:
    msg = str(err.errors()[0]["msg"])
    return msg.removeprefix("Value error, ")


async def _start_job(
    message: Message,
    bulk: BulkRunner,
    pool: asyncpg.Pool,
    owner: int,
    action: BulkAction,
    payload: dict[str, object],
    first_text: str,
) -> None:
    """Answer at once, then let the background job change every plan and edit the answer."""
    sent = await message.answer(first_text)
    await BulkJobRepository(pool).create(owner, action, payload, sent.message_id)
    bulk.wake()


async def _apply(
    message: Message, user: User, pool: asyncpg.Pool, bulk: BulkRunner, **change: object
) -> None:
    """Validate, save, confirm — or say what is wrong; running plans follow in the background."""
    try:
        schedule = Schedule.model_validate({**user_schedule(user).model_dump(), **change})
    except ValidationError as err:
        await message.answer(settings_problem(_problem(err)))
        return
    updated = await UserRepository(pool).update_schedule(
        user.telegram_id,
        timezone=schedule.timezone,
        window_start=schedule.window_start,
        window_end=schedule.window_end,
        workdays_only=schedule.workdays_only,
    )
    assert updated is not None
    head = settings_saved(updated)
    await _start_job(
        message,
        bulk,
        pool,
        user.telegram_id,
        "set_schedule",
        {"schedule": schedule.model_dump(mode="json"), "head": head},
        f"{head}\n{APPLYING}",
    )


async def show(message: Message, user: User) -> None:
    await message.answer(settings_text(user))


def resolve_timezone(raw: str) -> tuple[str | None, list[str]]:
    """(the IANA name, []) for any spelling of a known zone (`europe/berlin`), else
    (None, suggestions): zones of that city, a fixed-offset zone for "UTC+3", near misses."""
    names = available_timezones()
    by_lower = {n.lower(): n for n in names}
    key = re.sub(r"\s+", "_", raw.strip()).lower()
    if key in by_lower:
        return by_lower[key], []
    offset = OFFSET_RE.fullmatch(key.replace("_", ""))
    if offset is not None:
        hours = int(offset[2])
        if int(offset[3] or 0) == 0 and hours <= 14:
            # Etc/GMT signs are inverted (POSIX): UTC+3 is Etc/GMT-3.
            sign = "-" if offset[1] == "+" else "+"
            fixed = "Etc/UTC" if hours == 0 else f"Etc/GMT{sign}{hours}"
            return None, [fixed]
    cities = sorted(n for n in names if n.lower().rsplit("/", 1)[-1] == key)
    if cities:
        return None, cities[:3]
    close = difflib.get_close_matches(key, list(by_lower), n=3, cutoff=0.75)
    return None, [by_lower[c] for c in close]


async def timezone(
    message: Message,
    command: CommandObject,
    user: User,
    pool: asyncpg.Pool,
    bulk: BulkRunner,
) -> None:
    raw = (command.args or "").strip()
    if not raw:
        await message.answer(TIMEZONE_USAGE)
        return
    name, suggestions = resolve_timezone(raw)
    if name is None:
        await message.answer(unknown_timezone(raw, suggestions))
        return
    await _apply(message, user, pool, bulk, timezone=name)


async def window(
    message: Message, command: CommandObject, user: User, pool: asyncpg.Pool, bulk: BulkRunner
) -> None:
    m = WINDOW_RE.match(command.args or "")
    try:
        if m is None:
            raise ValueError
        start = time(int(m[1]), int(m[2]))
        end = time(int(m[3]), int(m[4]))
    except ValueError:
        await message.answer(WINDOW_USAGE)
        return
    await _apply(message, user, pool, bulk, window_start=start, window_end=end)


async def workdays(
    message: Message, command: CommandObject, user: User, pool: asyncpg.Pool, bulk: BulkRunner
) -> None:
    arg = (command.args or "").strip().lower()
    if arg not in ("on", "off"):
        await message.answer(WORKDAYS_USAGE)
        return
    await _apply(message, user, pool, bulk, workdays_only=arg == "on")


async def pause(
    message: Message,
    command: CommandObject,
    user: User,
    pool: asyncpg.Pool,
    plans: PlanService,
    bulk: BulkRunner,
) -> None:
    """A vacation: every running plan pauses, until resumed or for the given days; plans
    approved meanwhile join it (users.paused_until)."""
    arg = (command.args or "").strip()
    if arg and not (arg.isdigit() and 1 <= int(arg) <= MAX_PAUSE_DAYS):
        await message.answer(pause_usage(MAX_PAUSE_DAYS))
        return
    until = plans.days_from_now(int(arg)) if arg else None
    await UserRepository(pool).set_paused_until(user.telegram_id, until)
    span = pause_span(until, user.timezone)
    payload: dict[str, object] = {"until": until.isoformat() if until else None, "span": span}
    await _start_job(message, bulk, pool, user.telegram_id, "pause", payload, pausing(span))


async def resume(message: Message, user: User, pool: asyncpg.Pool, bulk: BulkRunner) -> None:
    await UserRepository(pool).set_paused_until(user.telegram_id, None)
    await _start_job(message, bulk, pool, user.telegram_id, "resume", {}, RESUMING)


def make_router() -> Router:
    """A fresh router per dispatcher (a router can belong to one parent only)."""
    router = Router(name="settings")
    router.message(Command("settings"))(show)
    router.message(Command("timezone"))(timezone)
    router.message(Command("window"))(window)
    router.message(Command("workdays"))(workdays)
    router.message(Command("pause"))(pause)
    router.message(Command("resume"))(resume)
    return router
