"""Cross-cutting: an update is handled once however often Telegram delivers it; every
update registers (or refreshes) its sender, handlers get the row; an owner who talks to
the bot again gets their blocked plans back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiogram import BaseMiddleware, Bot
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, ChatMemberUpdated, TelegramObject, Update
from aiogram.types import User as TgUser

from services.plans import ActionRejected, PlanService
from storage.handled_updates import HandledUpdates
from storage.lead_views import LeadViews
from storage.users import UserRepository
from telegram_ui.texts import STILL_WORKING, welcome_back

log = logging.getLogger("leadpilot.bot")

# What every middleware wraps: the next middleware or the handler (aiogram's signature).
Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class HandleOnceMiddleware(BaseMiddleware):
    """An update Telegram delivers again after it was handled is skipped.

    Telegram delivers an update until a webhook answers it, and webhook mode answers only
    once the update is handled, so one whose replica died mid-way reaches another replica;
    a second copy also comes when only the answer was lost. On `dp.update` inside the
    dispatcher's FSM middleware, so within the chat's lock: two copies never run at once.
    A handler that raised is not recorded (the owner was told; a copy may try again).
    """

    PRUNE_EVERY = 1000  # recorded updates between deletions of ids Telegram forgot

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._updates = HandledUpdates(pool)
        self._recorded = 0

    async def __call__(
        self,
        handler: Handler,
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        bot: Bot | None = data.get("bot")
        if not isinstance(event, Update) or bot is None:
            return await handler(event, data)
        if await self._updates.seen(bot.id, event.update_id):
            log.info("update %s was handled already: Telegram delivered it again", event.update_id)
            return UNHANDLED
        result = await handler(event, data)
        await self._updates.record(bot.id, event.update_id)
        self._recorded += 1
        if self._recorded % self.PRUNE_EVERY == 0:
            await self._updates.forget_old()
        return result


class RegisterUserMiddleware(BaseMiddleware):
    """Upsert the sender into `users` so a schedule exists before any plan starts.

    One cheap statement per update; it keeps names fresh and means no handler has to
    remember to register the user (e.g. someone who never sent /start).
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __call__(
        self,
        handler: Handler,
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        tg_user: TgUser | None = data.get("event_from_user")
        if tg_user is not None and not tg_user.is_bot:
            data["user"] = await UserRepository(self._pool).upsert(
                tg_user.id, tg_user.first_name, tg_user.last_name, tg_user.username
            )
        return await handler(event, data)


class ResumeBlockedMiddleware(BaseMiddleware):
    """A plan blocks when Telegram refuses delivery (the owner blocked the bot). Any sign
    of life from the owner (a message, a tap, unblocking the bot) resumes those plans and
    tells the owner which ones. Runs after the handler: the owner's own request first."""

    async def __call__(
        self,
        handler: Handler,
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        result = await handler(event, data)
        tg_user: TgUser | None = data.get("event_from_user")
        plans: PlanService | None = data.get("plans")
        bot: Bot | None = data.get("bot")
        if tg_user is None or tg_user.is_bot or plans is None or bot is None:
            return result
        if isinstance(event, ChatMemberUpdated) and event.new_chat_member.status in (
            "kicked",
            "left",
        ):
            return result  # blocking the bot is not coming back
        blocked = await LeadViews(plans.pool).blocked(tg_user.id)
        resumed = []
        for lead in blocked:
            try:
                await plans.resume(lead.id, patient=True)
            except ActionRejected as err:
                log.info("blocked plan of lead %s not resumed: %s", lead.id, err.reason)
                continue
            resumed.append(lead)
        if resumed:
            with contextlib.suppress(TelegramAPIError):
                await bot.send_message(tg_user.id, welcome_back(resumed))
        return result


class CallbackDeadlineMiddleware(BaseMiddleware):
    """Telegram drops a callback answer that comes too late and leaves the spinner going.
    A tap whose handler is held up (a hung database, a slow Temporal) is answered
    "still working" after `after` seconds; the handler carries on and its edit of the
    message shows the outcome. Outermost on callback queries, so it covers every wait."""

    def __init__(self, after: float = 9.0) -> None:
        self.after = after

    async def __call__(
        self,
        handler: Handler,
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, CallbackQuery):
            return await handler(event, data)
        work = asyncio.ensure_future(handler(event, data))
        done, _ = await asyncio.wait({work}, timeout=self.after)
        if not done:
            # Already answered by the handler (it answers early, then works on)? Then
            # Telegram refuses this one, which is fine.
            with contextlib.suppress(TelegramAPIError):
                await event.answer(STILL_WORKING)
        return await work
