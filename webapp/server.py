"""The Mini App's app factory: its routes mounted at /app, and the process that serves them.

The handlers live by job: signin.py (page, initData → session token), reads.py (as the
user under RLS, webapp.db.as_user), writes.py and schedule.py (plan changes through the
workflow with the same `PlanService` as the bot: same validators, same "Already handled"
answers; a step answered here also edits the reminder message in the chat).

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
import logging

from aiohttp import web

from services.plans import PlanService
from settings import Settings
from webapp.schedule import ScheduleWrites
from webapp.signin import APP_PATH, STATIC_DIR, SignIn
from webapp.writes import Writes

log = logging.getLogger("leadpilot.webapp")


class MiniApp(SignIn, Writes, ScheduleWrites):
    """Every route handler, bound to the pool, the plan service and the bot (for edits)."""


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
