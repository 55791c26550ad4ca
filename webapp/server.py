"""The Mini App's HTTP side: the page at /app, sign-in, and a small JSON API.

Reads run as the signed-in user under RLS (webapp.db.as_user). Writes that change a plan
go through the workflow with the bot's own `PlanService` (same validators, same "Already
handled" answers); a step answered here also edits the reminder message in the chat.

Routes (all JSON unless noted; every /app/api route but /session needs
`Authorization: Bearer <session token>`):

* ``GET  /app`` (HTML), ``GET /app/static/{file}``
* ``POST /app/api/session {init_data}`` → ``{token, expires_in, user}``
* ``GET  /app/api/today`` · ``GET /app/api/pipeline?q=`` · ``GET /app/api/leads/{id}``
* ``POST /app/api/leads/{id}/step {step_id, plan_version, action}`` (done, skip, snooze1,
  snooze3, stop)
* ``POST /app/api/leads/{id}/plan {action}`` (pause, resume, stop, regenerate)
* ``POST /app/api/leads/{id}/status {status}``
* ``GET|POST /app/api/settings`` · ``POST /app/api/vacation {days}`` (null resumes)
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiohttp import web
from pydantic import ValidationError
from temporalio.service import RPCError

from bot.routers.common import rejection_text
from bot.services import ActionRejected, NoWorkerInTime, PlanService, user_schedule
from settings import Settings, revealed
from storage.models import CLOSED_LEAD_STATUSES, Lead, LeadStatus
from storage.users import UserRepository
from telegram_ui.texts import reminder_outcome
from webapp import queries
from webapp.auth import AuthError, issue_token, session_secret, validate_init_data, verify_token
from webapp.db import as_user
from workflows.models import TERMINAL_PLAN_STATUSES, PlanState, Schedule

log = logging.getLogger("leadpilot.webapp")

APP_PATH = "/app"
STATIC_DIR = Path(__file__).with_name("static")
MAX_ID = 2**63 - 1
MAX_VACATION_DAYS = 365
TODAY_HORIZON_DAYS = 7
BULK_CONCURRENCY = 8
RUNNING = frozenset({"awaiting_approval", "active", "paused", "blocked"})
USER_KEY = web.RequestKey("miniapp_user", int)


def _error(status: int, message: str, **extra: Any) -> web.HTTPException:
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        503: web.HTTPServiceUnavailable,
    }
    body = json.dumps({"error": message, **extra})
    return classes[status](text=body, content_type="application/json")


def _plans(n: int) -> str:
    return f"{n} running plan" + ("" if n == 1 else "s")


def refusal(err: ActionRejected) -> web.HTTPException:
    """The plan said no: the chat's own words ("Already handled…" for a stale tap).

    Accepted but no worker took it in time: 202, it applies when one is back. Temporal
    unreachable: 503. A refusal by the workflow: 409.
    """
    if isinstance(err, NoWorkerInTime):
        return web.HTTPAccepted(
            text=json.dumps({"message": rejection_text(err), "pending": True}),
            content_type="application/json",
        )
    if err.unreachable:
        return _error(503, rejection_text(err))
    return _error(
        409,
        rejection_text(err),
        already_handled=err.already_handled,
        kind=err.kind.value if err.kind else None,
    )


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _error(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise _error(400, "body must be a JSON object")
    return body


def _int(value: Any, what: str, *, status: int = 400) -> int:
    """An id from the client: an int within int64, else a clear refusal."""
    if isinstance(value, bool):
        raise _error(status, f"{what} must be a number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _error(status, f"{what} must be a number") from None
    if not 1 <= number <= MAX_ID:
        raise _error(status, f"{what} is out of range")
    return number


def _hhmm(value: Any, what: str) -> time:
    try:
        hours, minutes = str(value).split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise _error(400, f"{what} must look like 09:00") from None


class MiniApp:
    """Request handlers bound to the pool, the plan service and the bot (for edits)."""

    def __init__(self, pool: asyncpg.Pool, plans: PlanService, bot: Bot, settings: Settings):
        self.pool = pool
        self.plans = plans
        self.bot = bot
        self.settings = settings
        self.secret = session_secret(
            revealed(settings.miniapp_session_secret),
            settings.telegram_bot_token.get_secret_value(),
        )

    # ------------------------------------------------------------------ page and sign-in

    async def page(self, request: web.Request) -> web.Response:
        text = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        script = html.escape(self.settings.miniapp_telegram_js, quote=True)
        return web.Response(
            text=text.replace("{{TELEGRAM_JS}}", script),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    async def session(self, request: web.Request) -> web.Response:
        body = await _body(request)
        init_data = body.get("init_data")
        if not isinstance(init_data, str):
            raise _error(401, "init_data is required")
        try:
            user = validate_init_data(
                init_data,
                self.settings.telegram_bot_token.get_secret_value(),
                self.settings.miniapp_auth_max_age_seconds,
            )
        except AuthError as err:
            raise _error(401, str(err)) from None
        # Same registration as the bot's middleware: a user who opens the app first exists.
        registered = await UserRepository(self.pool).upsert(
            user.id, user.first_name, user.last_name, user.username
        )
        ttl = self.settings.miniapp_session_ttl_seconds
        return web.json_response(
            {
                "token": issue_token(user.id, self.secret, ttl),
                "expires_in": ttl,
                "user": {
                    "id": user.id,
                    "first_name": user.first_name,
                    "timezone": registered.timezone,
                },
            }
        )

    @web.middleware
    async def authenticate(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        path = request.path
        if path.startswith(f"{APP_PATH}/api/") and path != f"{APP_PATH}/api/session":
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                raise _error(401, "sign in first")
            try:
                request[USER_KEY] = verify_token(
                    header.removeprefix("Bearer ").strip(), self.secret
                )
            except AuthError as err:
                raise _error(401, str(err)) from None
        return await handler(request)

    # ------------------------------------------------------------------ reads

    def _now(self) -> datetime:
        return datetime.now(UTC)

    async def today(self, request: web.Request) -> web.Response:
        owner = request[USER_KEY]
        horizon = timedelta(seconds=TODAY_HORIZON_DAYS * self.settings.day_seconds)
        async with as_user(self.pool, owner) as conn:
            items = await queries.today(conn, owner, self._now(), horizon)
        return web.json_response({"now": self._now().isoformat(), "items": items})

    async def pipeline(self, request: web.Request) -> web.Response:
        owner = request[USER_KEY]
        async with as_user(self.pool, owner) as conn:
            leads = await queries.pipeline(conn, owner, self._now(), request.query.get("q", ""))
        return web.json_response({"now": self._now().isoformat(), "leads": leads})

    async def lead(self, request: web.Request) -> web.Response:
        owner = request[USER_KEY]
        lead_id = _int(request.match_info["lead_id"], "lead id", status=404)
        async with as_user(self.pool, owner) as conn:
            view = await queries.lead(conn, owner, lead_id, self._now())
        if view is None:
            raise _error(404, "no such lead")
        return web.json_response({"now": self._now().isoformat(), "lead": view})

    async def _owned_lead(self, owner: int, lead_id: int) -> Lead:
        """The lead as the user's own RLS-scoped read sees it; 404 for anyone else's."""
        async with as_user(self.pool, owner) as conn:
            row = await conn.fetchrow("SELECT * FROM lead_registry WHERE id = $1", lead_id)
        if row is None:
            raise _error(404, "no such lead")
        return Lead.from_record(row)

    # ------------------------------------------------------------------ plan writes

    async def step(self, request: web.Request) -> web.Response:
        owner = request[USER_KEY]
        lead = await self._owned_lead(
            owner, _int(request.match_info["lead_id"], "lead id", status=404)
        )
        body = await _body(request)
        step_id = _int(body.get("step_id"), "step_id")
        version = _int(body.get("plan_version"), "plan_version")
        action = body.get("action")
        plans = self.plans
        new_state: PlanState
        try:
            if action == "done":
                new_state = await plans.complete(lead.id, version, step_id)
                outcome, answer = "✅ Done.", "Marked done ✅"
            elif action == "skip":
                new_state = await plans.skip(lead.id, version, step_id)
                outcome, answer = "⏭ Skipped.", "Skipped ⏭"
            elif action in ("snooze1", "snooze3"):
                days = 1 if action == "snooze1" else 3
                new_state = await plans.snooze(lead.id, version, step_id, days)
                unit = "day" if days == 1 else "days"
                outcome, answer = f"💤 Snoozed {days} {unit}.", f"Snoozed {days} {unit} 💤"
            elif action == "stop":
                return await self._stop(lead, step_id)
            else:
                raise _error(400, "action must be done, skip, snooze1, snooze3 or stop")
        except ActionRejected as err:
            raise refusal(err) from None
        await self._edit_reminder(lead, new_state, step_id, outcome)
        return web.json_response({"message": answer})

    async def _stop(self, lead: Lead, step_id: int | None) -> web.Response:
        state = await self.plans.state(lead.id)
        if state is None or state.status in TERMINAL_PLAN_STATUSES:
            status = state.status.value if state else "finished"
            raise _error(409, f"Already handled: plan is {status}", already_handled=True)
        try:
            await self.plans.cancel(lead.id, "stopped from the Mini App")
        except RPCError:
            raise _error(
                503, "The planner is unreachable right now; try again in a moment"
            ) from None
        if step_id is not None:
            await self._edit_reminder(
                lead,
                state,
                step_id,
                "🛑 Plan stopped. No more reminders for this lead.",
                show_next=False,
            )
        return web.json_response({"message": "Plan stopped 🛑"})

    async def _edit_reminder(
        self, lead: Lead, state: PlanState, step_id: int, outcome: str, *, show_next: bool = True
    ) -> None:
        """The chat's reminder says what happened, as after a tap in the chat."""
        step = state.step(step_id)
        if step is None or step.message_id is None:
            return
        text = reminder_outcome(lead, state, step_id, outcome, show_next=show_next)
        try:
            await self.bot.edit_message_text(
                text=text, chat_id=lead.telegram_id, message_id=step.message_id
            )
        except (TimeoutError, TelegramAPIError, OSError) as err:
            # Gone, too old or unchanged: the action itself stands.
            log.info("reminder %s of lead %s not edited: %s", step.message_id, lead.id, err)

    async def plan(self, request: web.Request) -> web.Response:
        owner = request[USER_KEY]
        lead = await self._owned_lead(
            owner, _int(request.match_info["lead_id"], "lead id", status=404)
        )
        action = (await _body(request)).get("action")
        plans = self.plans
        try:
            if action == "pause":
                await plans.pause(lead.id)
                return web.json_response({"message": "Paused ⏸"})
            if action == "resume":
                await plans.resume(lead.id)
                return web.json_response({"message": "Resumed ▶️"})
            if action == "stop":
                return await self._stop(lead, None)
            if action == "regenerate":
                current = await plans.state(lead.id)
                if current is None or current.status in TERMINAL_PLAN_STATUSES:
                    # Nothing open: a fresh plan, whose draft arrives in the chat.
                    user = await UserRepository(self.pool).get(owner)
                    try:
                        await plans.start(lead, user)
                    except RPCError:
                        raise _error(503, "The planner is unreachable right now") from None
                else:
                    await plans.regenerate(lead)
                return web.json_response(
                    {"message": "Drafting a new plan… it arrives in the chat to approve"}
                )
        except ActionRejected as err:
            raise refusal(err) from None
        raise _error(400, "action must be pause, resume, stop or regenerate")

    async def status(self, request: web.Request) -> web.Response:
        """One atomic status change, logged; closing a lead stops its plan (cancel signal)."""
        owner = request[USER_KEY]
        lead = await self._owned_lead(
            owner, _int(request.match_info["lead_id"], "lead id", status=404)
        )
        try:
            status = LeadStatus(str((await _body(request)).get("status")))
        except ValueError:
            raise _error(400, "unknown status") from None
        # Through the service, owner-checked in the statement: `authenticated` may not
        # write a status, because closing must also stop the plan (durably, as in the chat).
        change = await self.plans.close_lead(lead.id, owner, status)
        if change is None:
            raise _error(404, "no such lead")
        previous, updated, stopped = change
        if previous == updated.status:
            return web.json_response({"message": f"Already {updated.status.value}"})
        message = f"Status: {updated.status.value}"
        if updated.status in CLOSED_LEAD_STATUSES and previous not in CLOSED_LEAD_STATUSES:
            message += "; plan stopped" if stopped else "; the plan stops as soon as it can"
        return web.json_response({"message": message})

    # ------------------------------------------------------------------ settings

    async def get_settings(self, request: web.Request) -> web.Response:
        owner = request[USER_KEY]
        async with as_user(self.pool, owner) as conn:
            view = await queries.settings(conn, owner)
        if view is None:
            raise _error(404, "no such user")
        return web.json_response({"settings": view})

    async def save_settings(self, request: web.Request) -> web.Response:
        """Validate, save as the user (column grants allow exactly these), move running plans."""
        owner = request[USER_KEY]
        body = await _body(request)
        user = await UserRepository(self.pool).get(owner)
        if user is None:
            raise _error(404, "no such user")
        change: dict[str, Any] = {}
        if "timezone" in body:
            change["timezone"] = str(body["timezone"]).strip()[:64]
        if "window_start" in body:
            change["window_start"] = _hhmm(body["window_start"], "window_start")
        if "window_end" in body:
            change["window_end"] = _hhmm(body["window_end"], "window_end")
        if "workdays_only" in body:
            if not isinstance(body["workdays_only"], bool):
                raise _error(400, "workdays_only must be true or false")
            change["workdays_only"] = body["workdays_only"]
        try:
            schedule = Schedule.model_validate({**user_schedule(user).model_dump(), **change})
        except ValidationError as err:
            problem = str(err.errors()[0]["msg"]).removeprefix("Value error, ")
            raise _error(400, f"{problem}. Nothing was changed.") from None
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
            owner, lambda lead_id: self.plans.set_schedule(lead_id, schedule)
        )
        return web.json_response(
            {
                "settings": view,
                "applied": applied,
                "message": f"Saved; {_plans(applied)} moved",
            }
        )

    async def vacation(self, request: web.Request) -> web.Response:
        """Pause every running plan for `days` (or until resumed); null resumes them all."""
        owner = request[USER_KEY]
        days = (await _body(request)).get("days")
        plans = self.plans
        if days is None:
            applied = await self._each_running_plan(owner, plans.resume)
            until = None
            message = f"Resumed {_plans(applied)} ▶️"
        else:
            if (
                isinstance(days, bool)
                or not isinstance(days, int)
                or not 1 <= days <= MAX_VACATION_DAYS
            ):
                raise _error(400, f"days must be 1–{MAX_VACATION_DAYS}")
            until = plans.days_from_now(days)
            applied = await self._each_running_plan(
                owner, lambda lead_id: plans.pause(lead_id, until)
            )
            message = f"Paused {_plans(applied)} ⏸"
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
                except NoWorkerInTime:
                    return True
                except ActionRejected:
                    return False
                return True

        return sum(await asyncio.gather(*(one(lead_id) for lead_id in running)))


def add_miniapp_routes(app: web.Application, miniapp: MiniApp) -> None:
    """Mount the Mini App at /app on `app` (its middleware only guards /app/api/*)."""
    app.middlewares.append(miniapp.authenticate)
    r = app.router
    r.add_get(APP_PATH, miniapp.page)
    r.add_get(f"{APP_PATH}/", miniapp.page)
    r.add_static(f"{APP_PATH}/static", STATIC_DIR, append_version=False)
    api = f"{APP_PATH}/api"
    r.add_post(f"{api}/session", miniapp.session)
    r.add_get(f"{api}/today", miniapp.today)
    r.add_get(f"{api}/pipeline", miniapp.pipeline)
    r.add_get(f"{api}/leads/{{lead_id}}", miniapp.lead)
    r.add_post(f"{api}/leads/{{lead_id}}/step", miniapp.step)
    r.add_post(f"{api}/leads/{{lead_id}}/plan", miniapp.plan)
    r.add_post(f"{api}/leads/{{lead_id}}/status", miniapp.status)
    r.add_get(f"{api}/settings", miniapp.get_settings)
    r.add_post(f"{api}/settings", miniapp.save_settings)
    r.add_post(f"{api}/vacation", miniapp.vacation)


def build_app(miniapp: MiniApp) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    add_miniapp_routes(app, miniapp)
    return app


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """The Mini App as its own process (or task): pool, Temporal client, bot for edits."""
    from storage.db import create_pool
    from telegram_ui.session import make_bot
    from temporal_client import connect

    client = await connect(settings.temporal_address, settings.temporal_namespace)
    pool = await create_pool(settings.database_url.get_secret_value())
    bot = make_bot(settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base)
    runner = web.AppRunner(
        build_app(MiniApp(pool, PlanService(client, pool, settings), bot, settings)),
        access_log=None,
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.miniapp_host, settings.miniapp_port)
        await site.start()
        log.info("mini app on %s:%s%s", settings.miniapp_host, settings.miniapp_port, APP_PATH)
        await stop.wait()
    finally:
        await runner.cleanup()
        with contextlib.suppress(Exception):
            await bot.session.close()
        await pool.close()
