"""What every Mini App route handler holds: the pool, the plan service, the bot, settings."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from aiogram import Bot

from services.plans import PlanService
from settings import Settings, revealed
from webapp.auth import session_secret


class MiniAppBase:
    """The state the route mixins (signin, reads, writes, schedule) share."""

    def __init__(self, pool: asyncpg.Pool, plans: PlanService, bot: Bot, settings: Settings):
        self.pool = pool
        self.plans = plans
        self.bot = bot  # edits the chat's reminder after a step answered in the app
        self.settings = settings
        self.secret = session_secret(
            revealed(settings.miniapp_session_secret),
            settings.telegram_bot_token.get_secret_value(),
        )

    def _now(self) -> datetime:
        return datetime.now(UTC)
