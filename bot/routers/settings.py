"""/settings, /timezone, /window, /workdays, /pause, /resume.

A change is validated with the workflow's own `Schedule` model before anything is
saved, then stored in `users` and pushed to every running plan (`set_schedule`), so
pending reminders move too, not only future plans.
"""

from __future__ import annotations

import re
from datetime import time

import asyncpg
from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from pydantic import ValidationError

from bot.services import PlanService, user_schedule
from bot.texts import settings_text, when
from storage.models import User
from storage.users import UserRepository
from telegram_ui.render import clip
from workflows.models import Schedule

WINDOW_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*$")
MAX_PAUSE_DAYS = 365


def _problem(err: ValidationError) -> str:
    msg = str(err.errors()[0]["msg"])
    return msg.removeprefix("Value error, ")


async def _apply(
    message: Message, user: User, pool: asyncpg.Pool, plans: PlanService, **change: object
) -> None:
    """Validate, save, push to running plans, then confirm — or say what is wrong."""
    try:
        schedule = Schedule.model_validate({**user_schedule(user).model_dump(), **change})
    except ValidationError as err:
        await message.answer(f"⚠️ {clip(_problem(err), 300)}. Nothing was changed.")
        return
    updated = await UserRepository(pool).update_schedule(
        user.telegram_id,
        timezone=schedule.timezone,
        window_start=schedule.window_start,
        window_end=schedule.window_end,
        workdays_only=schedule.workdays_only,
    )
    applied, _ = await plans.for_each_open_plan(
        user.telegram_id, lambda lead_id: plans.set_schedule(lead_id, schedule)
    )
    assert updated is not None
    note = f"\nApplied to {applied} running plan{'s' if applied != 1 else ''}." if applied else ""
    await message.answer("✅ Saved.\n\n" + settings_text(updated) + note)


async def show(message: Message, user: User) -> None:
    await message.answer(settings_text(user))


async def timezone(
    message: Message, command: CommandObject, user: User, pool: asyncpg.Pool, plans: PlanService
) -> None:
    name = (command.args or "").strip()
    if not name:
        await message.answer("Usage: /timezone Europe/Berlin (an IANA timezone name)")
        return
    await _apply(message, user, pool, plans, timezone=name)


async def window(
    message: Message, command: CommandObject, user: User, pool: asyncpg.Pool, plans: PlanService
) -> None:
    m = WINDOW_RE.match(command.args or "")
    try:
        if m is None:
            raise ValueError
        start = time(int(m[1]), int(m[2]))
        end = time(int(m[3]), int(m[4]))
    except ValueError:
        await message.answer("⚠️ Usage: /window 09:00-18:00. Nothing was changed.")
        return
    await _apply(message, user, pool, plans, window_start=start, window_end=end)


async def workdays(
    message: Message, command: CommandObject, user: User, pool: asyncpg.Pool, plans: PlanService
) -> None:
    arg = (command.args or "").strip().lower()
    if arg not in ("on", "off"):
        await message.answer("⚠️ Usage: /workdays on|off. Nothing was changed.")
        return
    await _apply(message, user, pool, plans, workdays_only=arg == "on")


async def pause(
    message: Message, command: CommandObject, user: User, pool: asyncpg.Pool, plans: PlanService
) -> None:
    """A vacation: pause every running plan, until resumed or for the given days."""
    arg = (command.args or "").strip()
    if arg and not (arg.isdigit() and 1 <= int(arg) <= MAX_PAUSE_DAYS):
        await message.answer(f"⚠️ Usage: /pause [days], days 1–{MAX_PAUSE_DAYS}.")
        return
    until = plans.days_from_now(int(arg)) if arg else None
    applied, _ = await plans.for_each_open_plan(
        user.telegram_id, lambda lead_id: plans.pause(lead_id, until)
    )
    await UserRepository(pool).set_paused_until(user.telegram_id, until)
    span = f" until {when(until, user.timezone)}" if until else " until you send /resume"
    await message.answer(f"⏸ Paused {applied} plan{'s' if applied != 1 else ''}{span}.")


async def resume(message: Message, user: User, pool: asyncpg.Pool, plans: PlanService) -> None:
    applied, _ = await plans.for_each_open_plan(user.telegram_id, plans.resume)
    await UserRepository(pool).set_paused_until(user.telegram_id, None)
    await message.answer(f"▶️ Resumed {applied} plan{'s' if applied != 1 else ''}.")


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
