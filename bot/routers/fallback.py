"""Last resort: unknown commands get a hint, unknown buttons still get their answer.

Telegram shows a spinner until a callback query is answered; a button from an old
bot version or forged data must not leave it spinning.
"""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from telegram_ui.texts import UNKNOWN_BUTTON, UNKNOWN_COMMAND


async def unknown_command(message: Message) -> None:
    await message.answer(UNKNOWN_COMMAND)


async def unknown_button(query: CallbackQuery) -> None:
    await query.answer(UNKNOWN_BUTTON)


def make_router() -> Router:
    """A fresh router per dispatcher (a router can belong to one parent only)."""
    router = Router(name="fallback")
    router.message(F.text.startswith("/"))(unknown_command)
    router.callback_query()(unknown_button)
    return router
