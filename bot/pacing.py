"""The bot's own messages keep Telegram's ~1 message/s per chat together with the worker's.

Each new message to a chat takes the chat's next send slot in `chat_send_slots` and,
right before the HTTP call, claims the chat and a place in the bot-wide window as the
send activities do (storage/pacing.py, `ChatPacer.claim_send`), so a reply and a reminder
due at the same moment do not both land in one second and draw a 429, and replies count
towards the bot's limit with the reminders. Edits and callback answers don't wait: they
don't count against the per-chat message limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import asyncpg
from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.methods.base import TelegramType

from storage.pacing import ChatPacer, Sending

if TYPE_CHECKING:
    from aiogram.methods import Response, TelegramMethod

log = logging.getLogger("leadpilot.bot")

PACED_METHODS = frozenset({"sendMessage", "sendPhoto", "sendDocument", "forwardMessage"})
SPACING = 1.2  # seconds between messages to one chat, as the send activities use
# A reply waits at most this long for its slot (a burst of reminders may have taken the
# next few); after that it goes out and RetryRequestMiddleware handles a 429.
MAX_WAIT = 3.0
# A reply's claim on its chat lapses after this long if the bot dies mid-call.
HOLD = 15.0
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class ChatPacingMiddleware(BaseRequestMiddleware):
    def __init__(self, pool: asyncpg.Pool, spacing: float = SPACING, per_second: float = 0) -> None:
        self._pacer = ChatPacer(pool, spacing, per_second)

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        chat_id = getattr(method, "chat_id", None)
        if not (
            method.__api_method__ in PACED_METHODS and isinstance(chat_id, int) and chat_id > 0
        ):
            return await make_request(bot, method)
        sending = None
        try:
            sending = await self._pace(chat_id)
        except _DB_ERRORS as err:
            # Pacing is a courtesy: never hold back a reply for it.
            log.info("no send slot for chat %s (%r); sending unpaced", chat_id, err)
        try:
            return await make_request(bot, method)
        finally:
            if sending is not None:
                with contextlib.suppress(*_DB_ERRORS):
                    await self._pacer.ended(sending)

    async def _pace(self, chat_id: int) -> Sending | None:
        """Wait for the reserved slot, then claim the chat and a place in the bot-wide
        window (MAX_WAIT in all; None: waited enough, send anyway)."""
        waited = min(await self._pacer.slot_wait(chat_id, None), MAX_WAIT)
        if waited > 0:
            await asyncio.sleep(waited)
        return await self._pacer.claim_send(chat_id, HOLD, MAX_WAIT - waited)
