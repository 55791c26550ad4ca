"""Cross-cutting: every update registers (or refreshes) its sender, handlers get the row."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from aiogram.types import User as TgUser

from storage.users import UserRepository


class RegisterUserMiddleware(BaseMiddleware):
    """Upsert the sender into `users` so a schedule exists before any plan starts.

    One cheap statement per update; it keeps names fresh and means no handler has to
    remember to register the user (e.g. someone who never sent /start).
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        tg_user: TgUser | None = data.get("event_from_user")
        if tg_user is not None and not tg_user.is_bot:
            data["user"] = await UserRepository(self._pool).upsert(
                tg_user.id, tg_user.first_name, tg_user.last_name, tg_user.username
            )
        return await handler(event, data)
