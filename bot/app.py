"""The bot process: dispatcher wiring, long polling or webhook, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from urllib.parse import urlsplit

import asyncpg
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramAPIError
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.types import BotCommand, MenuButtonWebApp, WebAppInfo
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from temporalio.client import Client

from bot.bulk import BulkRunner
from bot.failures import answer_failure
from bot.middlewares import (
    CallbackDeadlineMiddleware,
    HandleOnceMiddleware,
    RegisterUserMiddleware,
    ResumeBlockedMiddleware,
)
from bot.pacing import ChatPacingMiddleware
from bot.routers import all_routers
from logging_setup import setup_logging
from services.plans import CancelRetrier, PlanService
from settings import Settings, load_settings, revealed, usable_miniapp_url
from storage.db import create_pool
from storage.fsm import PostgresEventIsolation, PostgresStorage, create_lock_pool
from storage.handled_updates import HandledUpdates
from telegram_ui import texts
from telegram_ui.session import make_bot
from temporal_client import connect

log = logging.getLogger("leadpilot.bot")

COMMANDS = [BotCommand(command=name, description=about) for name, about in texts.COMMANDS]
DEFAULT_WEBHOOK_PATH = "/telegram/webhook"
WEBHOOK_MAX_CONNECTIONS = 100
# A dialog left half-way (an /add never finished, an offer never answered) is dropped
# after this many days, on the next bot start.
DIALOG_RETENTION_DAYS = 7


def build_dispatcher(
    pool: asyncpg.Pool,
    temporal_client: Client,
    settings: Settings,
    *,
    lock_pool: asyncpg.Pool | None = None,
) -> Dispatcher:
    """Routers, middleware and dependencies (injected into handlers by parameter name:
    `pool`, `plans` (Temporal and settings behind it), `bulk`, and `user` from middleware).

    Stateless process: dialog state lives in PostgreSQL (PostgresStorage), so a restart or
    another replica continues a half-finished /add. One chat's updates are processed one
    at a time and in arrival order while different chats run in parallel: aiogram's
    per-chat event isolation, with a PostgreSQL advisory lock (on `lock_pool`) so that
    holds across replicas too. A failing update is answered by `answer_failure`, never
    dropped silently.
    """
    plans = PlanService(temporal_client, pool, settings)
    bulk = BulkRunner(plans)
    storage = PostgresStorage(pool)
    dp = Dispatcher(
        storage=storage,
        events_isolation=(
            SimpleEventIsolation()
            if lock_pool is None
            else PostgresEventIsolation(lock_pool, settings.bot_chats_at_once)
        ),
        pool=pool,
        plans=plans,
        bulk=bulk,
    )
    dp.update.outer_middleware(HandleOnceMiddleware(pool))
    dp.callback_query.outer_middleware(CallbackDeadlineMiddleware())
    registration = RegisterUserMiddleware(pool)
    dp.message.outer_middleware(registration)
    dp.callback_query.outer_middleware(registration)
    resume_blocked = ResumeBlockedMiddleware()
    for observer in (dp.message, dp.callback_query, dp.my_chat_member):
        observer.outer_middleware(resume_blocked)
    dp.include_routers(*all_routers())
    dp.errors.register(answer_failure)
    # Background work of every bot process: the cancel outbox and bulk plan changes.
    background_stop = asyncio.Event()
    background: list[asyncio.Task[None]] = []

    @dp.startup()
    async def on_startup(bot: Bot) -> None:
        background_stop.clear()
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            await storage.forget_stale(DIALOG_RETENTION_DAYS)
            await HandledUpdates(pool).forget_old()
        background.append(asyncio.create_task(CancelRetrier(plans).run(background_stop)))
        background.append(asyncio.create_task(bulk.run(bot, background_stop)))
        with contextlib.suppress(TelegramAPIError):  # a menu is not worth failing start-up
            await bot.set_my_commands(COMMANDS)
            # The Mini App (webapp/) as the chat's menu button, when it has a usable URL.
            url = usable_miniapp_url(settings.miniapp_url, settings.telegram_api_base)
            if url is not None:
                await bot.set_chat_menu_button(
                    menu_button=MenuButtonWebApp(
                        text=texts.MENU_BUTTON, web_app=WebAppInfo(url=url)
                    )
                )

    @dp.shutdown()
    async def on_shutdown() -> None:
        background_stop.set()
        while background:
            await background.pop()

    return dp


def make_process_bot(settings: Settings, pool: asyncpg.Pool) -> Bot:
    """The bot process's Bot: it retries flood control and server errors itself
    (RetryRequestMiddleware, outermost) and paces its messages per chat together with the
    worker, and keeps to the bot-wide limit with it (ChatPacingMiddleware, so each retry
    takes a fresh slot)."""
    bot = make_bot(
        settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base, retry=True
    )
    bot.session.middleware(
        ChatPacingMiddleware(
            pool, settings.chat_spacing_seconds, settings.telegram_sends_per_second
        )
    )
    return bot


def webhook_path(settings: Settings) -> str:
    if settings.webhook_url:
        path = urlsplit(settings.webhook_url).path
        if path and path != "/":
            return path
    return DEFAULT_WEBHOOK_PATH


def build_webhook_app(dp: Dispatcher, bot: Bot, settings: Settings) -> web.Application:
    """aiohttp app serving Telegram's webhook; the secret token header is required.

    aiogram's SimpleRequestHandler compares it with secrets.compare_digest (constant
    time) and answers 401 on a mismatch.
    """
    secret = revealed(settings.webhook_secret)
    if not secret:
        raise ValueError("webhook mode needs WEBHOOK_SECRET")
    app = web.Application()
    # Answered once handled (not on receipt): Telegram delivers the update again if this
    # replica dies first. A shutdown stops taking updates and finishes those in flight.
    SimpleRequestHandler(
        dispatcher=dp, bot=bot, secret_token=secret, handle_in_background=False
    ).register(app, path=webhook_path(settings))
    setup_application(app, dp, bot=bot)
    return app


async def _serve_webhook(dp: Dispatcher, bot: Bot, settings: Settings, stop: asyncio.Event) -> None:
    assert settings.webhook_url is not None
    app = build_webhook_app(dp, bot, settings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.webhook_host, settings.webhook_port)
    await site.start()
    await bot.set_webhook(
        settings.webhook_url,
        secret_token=revealed(settings.webhook_secret),
        allowed_updates=dp.resolve_used_update_types(),
        # Each delivery is held until its update is handled: Telegram's most (its default
        # is 40) keeps a slow tap from holding up other chats.
        max_connections=WEBHOOK_MAX_CONNECTIONS,
    )
    log.info("webhook listening on %s:%s", settings.webhook_host, settings.webhook_port)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # runs the dispatcher's shutdown hooks


async def run_bot(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or until `stop` is set, for embedding and tests).

    Shutdown is graceful: polling stops taking updates, handlers in flight finish, then
    the HTTP session and the pool close.
    """
    if settings.bot_mode == "webhook" and not (
        settings.webhook_url and revealed(settings.webhook_secret)
    ):
        sys.exit("leadpilot: webhook mode needs WEBHOOK_URL and WEBHOOK_SECRET")
    temporal_client = await connect(settings.temporal_address, settings.temporal_namespace)
    pool = await create_pool(settings.database_url.get_secret_value())
    # The per-chat locks across replicas: all of them on one connection.
    lock_pool = await create_lock_pool(settings.database_url.get_secret_value())
    bot = make_process_bot(settings, pool)
    dp = build_dispatcher(pool, temporal_client, settings, lock_pool=lock_pool)
    loop = asyncio.get_running_loop()
    signals: list[signal.Signals] = []
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
            signals.append(sig)
    try:
        if settings.bot_mode == "webhook":
            await _serve_webhook(dp, bot, settings, stop)
        else:
            await bot.delete_webhook()
            polling = asyncio.create_task(
                dp.start_polling(bot, handle_signals=False, close_bot_session=False)
            )
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({polling, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not polling.done():
                await dp.stop_polling()
            stopper.cancel()
            await polling
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await bot.session.close()
        lock_pool.terminate()  # its session holds chat locks; ending it releases them
        await pool.close()
        log.info("bot stopped")


def main() -> None:
    settings = load_settings()
    setup_logging(settings.log_format, settings.log_level)
    asyncio.run(run_bot(settings))
