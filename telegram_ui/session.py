"""The one way to build an aiogram Bot, for the bot process and the send activities alike."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods.base import Response as ResponseModel
from aiogram.methods.base import TelegramType

if TYPE_CHECKING:
    from aiogram.methods import Response, TelegramMethod

log = logging.getLogger("leadpilot.telegram")


class RetryRequestMiddleware(BaseRequestMiddleware):
    """Retry flood control (429) after exactly `retry_after`, 5xx and network errors with
    doubling backoff; bounded in attempts and in total wait, then the error propagates.

    For the bot process only: the worker's send activities must not retry inside the HTTP
    call, they turn a 429 into a Temporal retry (`next_retry_delay`) so the delivery ledger
    and the activity's lease stay in charge of duplicates.
    """

    def __init__(
        self,
        *,
        attempts: int = 5,
        max_total_wait: float = 60.0,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        self.attempts = attempts
        self.max_total_wait = max_total_wait
        self.backoff = backoff
        self.max_backoff = max_backoff

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        waited = 0.0
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as err:
                pause = float(err.retry_after)
                problem: Exception = err
            except (TelegramServerError, TelegramNetworkError) as err:
                pause, delay = delay, min(delay * 2, self.max_backoff)
                problem = err
            if attempt == self.attempts or waited + pause > self.max_total_wait:
                raise problem
            log.warning(
                "%s failed (%s); retry %d in %.1fs",
                method.__api_method__,
                type(problem).__name__,
                attempt,
                pause,
            )
            waited += pause
            await asyncio.sleep(pause)
        raise AssertionError("unreachable: the last attempt returns or raises")


class KeepResponseModels(BaseRequestMiddleware):
    """aiogram parametrizes `Response[T]` on every call, and pydantic caches a
    parametrized model only weakly: collected between calls, it was built again, schema
    and all (a tenth of the bot process's CPU under a stream of taps, profiled with
    py-spy). Holding one per return type keeps pydantic's cache warm."""

    held: ClassVar[dict[Any, Any]] = {}

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        returning = method.__returning__
        if returning not in self.held:
            self.held[returning] = ResponseModel[returning]  # type: ignore[valid-type]
        return await make_request(bot, method)


def make_bot(token: str, api_base: str | None = None, *, retry: bool = False) -> Bot:
    """HTML by default (every string we build escapes user and LLM text); `api_base` points
    at a local Bot API server or the project's emulator instead of api.telegram.org.

    `retry` adds RetryRequestMiddleware: the bot process wants it, the worker must not.
    """
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base)) if api_base else None
    bot = Bot(token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    bot.session.middleware(KeepResponseModels())
    if retry:
        bot.session.middleware(RetryRequestMiddleware())
    return bot
