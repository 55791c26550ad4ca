"""/start, /help and /cancel: registration happens in the middleware, here we greet."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import ChatMemberUpdated, Message

from telegram_ui.texts import HELP, WELCOME, cancelled


async def start(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(WELCOME)


async def help_(message: Message) -> None:
    await message.answer(HELP)


async def cancel(message: Message, state: FSMContext) -> None:
    """Leaves any dialog at any step; harmless outside one."""
    had_dialog = await state.get_state() is not None
    await state.clear()
    await message.answer(cancelled(had_dialog))


async def member_changed(event: ChatMemberUpdated) -> None:
    """The owner blocked or unblocked the bot; ResumeBlockedMiddleware acts on unblocking.
    (Handling the update at all makes polling ask Telegram for it.)"""


def make_router() -> Router:
    """A fresh router per dispatcher (a router can belong to one parent only)."""
    router = Router(name="start")
    router.message(CommandStart())(start)
    router.message(Command("help"))(help_)
    router.message(Command("cancel"), StateFilter("*"))(cancel)
    router.my_chat_member()(member_changed)
    return router
