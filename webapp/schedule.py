"""The write API for all of a user's plans: settings (schedule) and vacation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from services.plans import ActionRejected, user_schedule
from storage.models import CLOSED_LEAD_STATUSES
from storage.users import UserRepository
from telegram_ui.texts import app_paused, app_resumed, app_saved
from webapp import queries
from webapp.base import MiniAppBase
from webapp.db import as_user
from webapp.http import USER_KEY, error, hhmm, json_body
from workflows.models import Schedule

MAX_VACATION_DAYS = 365
BULK_CONCURRENCY = 8
RUNNING = frozenset({"awaiting_approval", "active", "paused", "blocked"})


class ScheduleWrites(MiniAppBase):
    async def save_settings(self, request: web.Request) -> web.Response:
        """Validate, save as the user (column grants allow exactly these), move running plans."""
        owner = request[USER_KEY]
        body = await json_body(request)
        user = await UserRepository(self.pool).get(owner)
        if user is None:
            raise error(404, "no such user")
        change: dict[str, Any] = {}
        if "timezone" in body:
            change["timezone"] = str(body["timezone"]).strip()[:64]
        if "window_start" in body:
            change["window_start"] = hhmm(body["window_start"], "window_start")
        if "window_end" in body:
            change["window_end"] = hhmm(body["window_end"], "window_end")
        if "workdays_only" in body:
            if not isinstance(body["workdays_only"], bool):
                raise error(400, "workdays_only must be true or false")
            change["workdays_only"] = body["workdays_only"]
        try:
            schedule = Schedule.model_validate({**user_schedule(user).model_dump(), **change})
        except ValidationError as err:
            problem = str(err.errors()[0]["msg"]).removeprefix("Value error, ")
            raise error(400, f"{problem}. Nothing was changed.") from None
        async with as_user(self.pool, owner) as conn:
            await UserRepository(conn).update_schedule(
                owner,
                timezone=schedule.timezone,
                window_start=schedule.window_start,
                window_end=schedule.window_end,
                workdays_only=schedule.workdays_only,
            )
            view = await queries.settings(conn, owner)
        applied = await self._each_running_plan(
            owner, lambda lead_id: self.plans.set_schedule(lead_id, schedule, patient=True)
        )
        return web.json_response(
            {"settings": view, "applied": applied, "message": app_saved(applied)}
        )

    async def vacation(self, request: web.Request) -> web.Response:
        """Pause every running plan for `days` (or until resumed); null resumes them all."""
        owner = request[USER_KEY]
        days = (await json_body(request)).get("days")
        plans = self.plans
        if days is None:
            applied = await self._each_running_plan(
                owner, lambda lead_id: plans.resume(lead_id, patient=True)
            )
            until = None
            message = app_resumed(applied)
        else:
            if (
                isinstance(days, bool)
                or not isinstance(days, int)
                or not 1 <= days <= MAX_VACATION_DAYS
            ):
                raise error(400, f"days must be 1–{MAX_VACATION_DAYS}")
            until = plans.days_from_now(days)
            applied = await self._each_running_plan(
                owner, lambda lead_id: plans.pause(lead_id, until, patient=True)
            )
            message = app_paused(applied)
        async with as_user(self.pool, owner) as conn:
            await UserRepository(conn).set_paused_until(owner, until)
            view = await queries.settings(conn, owner)
        return web.json_response({"settings": view, "applied": applied, "message": message})

    async def _each_running_plan(self, owner: int, action: Callable[[int], Awaitable[Any]]) -> int:
        """Apply `action` to every plan the mirror shows running; how many took it.

        A plan that refuses (nothing to change, finished meanwhile) is skipped, not fatal;
        one accepted but not yet taken by a worker counts, it applies when one is back.
        """
        async with as_user(self.pool, owner) as conn:
            leads = await queries.pipeline(conn, owner, self._now())
        running = [
            lead["id"]
            for lead in leads
            if lead["plan_status"] in RUNNING and lead["status"] not in CLOSED_LEAD_STATUSES
        ]
        gate = asyncio.Semaphore(BULK_CONCURRENCY)

        async def one(lead_id: int) -> bool:
            async with gate:
                try:
                    await action(lead_id)
                except ActionRejected as err:
                    return err.pending  # accepted, applied when a worker is back
                return True

        return sum(await asyncio.gather(*(one(lead_id) for lead_id in running)))
