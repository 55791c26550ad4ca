"""The one way to build an aiogram Bot, for the bot process and the send activities alike."""

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode


def make_bot(token: str, api_base: str | None = None) -> Bot:
    """HTML by default (every string we build escapes user and LLM text); `api_base` points
    at a local Bot API server or the project's emulator instead of api.telegram.org."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base)) if api_base else None
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
