"""The web chat page's HTTP API, with a tiny real aiogram bot long-polling the emulator.

Why: the page is how a newcomer meets the bot in the local stack; these tests pin that
what the user does on the page reaches aiogram as real updates and that everything the
bot does (replies, keyboards, edits, callback answers) comes back to the page — and that
nothing the user types is ever turned into markup.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import CommandStart
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiohttp import web

from emulators.telegram import TelegramEmulator
from emulators.webchat import DEFAULT_USER_ID, mount_webchat

USER = DEFAULT_USER_ID


class _Session(AiohttpSession):
    """aiogram's session minus the 0.25 s TLS-shutdown grace sleep on close (plain HTTP)."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def make_bot(emulator: TelegramEmulator) -> Bot:
    """A real aiogram Bot pointed at the emulator."""
    return Bot(emulator.token, session=_Session(api=TelegramAPIServer.from_base(emulator.base_url)))


@dataclass
class TinyStack:
    """An emulator serving the chat page, and what the tiny bot saw through aiogram."""

    emulator: TelegramEmulator
    seen_texts: list[str] = field(default_factory=list)
    seen_callbacks: list[str] = field(default_factory=list)

    @property
    def chat_url(self) -> str:
        return f"{self.emulator.base_url}/chat"

    @property
    def api(self) -> str:
        return f"{self.emulator.base_url}/chat/api"


def tiny_bot_router(stack: TinyStack) -> Router:
    """Echo with an inline keyboard; "Done" edits the message and answers with a toast."""
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        stack.seen_texts.append(message.text or "")
        await message.answer("Hi! Send me anything.")

    @router.message(F.text)
    async def echo(message: Message) -> None:
        stack.seen_texts.append(message.text or "")
        await message.answer(
            f"You said: <b>{html.escape(message.text or '')}</b>",
            parse_mode="HTML",
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[
                    [
                        InlineKeyboardButton(text="Done", callback_data="done"),
                        InlineKeyboardButton(text="Why?", callback_data="why"),
                    ]
                ]
            ),
        )

    @router.callback_query(F.data == "done")
    async def done(query: CallbackQuery) -> None:
        stack.seen_callbacks.append("done")
        assert isinstance(query.message, Message)
        await query.message.edit_text("<i>Marked as done</i> ✅", parse_mode="HTML")
        await query.answer("Nice work!")

    @router.callback_query(F.data == "why")
    async def why(query: CallbackQuery) -> None:
        stack.seen_callbacks.append("why")
        await query.answer("Because the plan says so", show_alert=True)

    return router


@asynccontextmanager
async def tiny_stack(
    *hooks: Callable[[web.Application], None],
) -> AsyncIterator[TinyStack]:
    """Emulator + chat page + the tiny bot long-polling through the real aiogram client;
    ``hooks`` go to the emulator's app before it starts."""
    emulator = TelegramEmulator()
    mount_webchat(emulator)
    for hook in hooks:
        emulator.add_app_hook(hook)
    await emulator.start()
    stack = TinyStack(emulator)
    bot = make_bot(emulator)
    await bot.set_my_commands([BotCommand(command="start", description="Start over")])
    dp = Dispatcher()
    dp.include_router(tiny_bot_router(stack))
    polling = asyncio.create_task(
        dp.start_polling(bot, polling_timeout=5, handle_signals=False, close_bot_session=False)
    )
    try:
        yield stack
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 10)
        await bot.session.close()
        await emulator.stop()


@pytest.fixture
async def stack(open_requests: Any) -> AsyncIterator[TinyStack]:
    async with tiny_stack(open_requests.install) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def _get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _post(http: aiohttp.ClientSession, url: str, body: Any, status: int = 200) -> Any:
    async with http.post(url, json=body) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def _events_until(
    http: aiohttp.ClientSession, stack: TinyStack, since: int, want: str, count: int = 1
) -> tuple[list[dict[str, Any]], int]:
    """Long-poll like the page does until ``count`` events of kind ``want`` arrived."""
    collected: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while sum(e["kind"] == want for e in collected) < count:
            data = await _get(http, f"{stack.api}/events?since={since}&timeout=5")
            assert data["reset"] is False
            collected += data["events"]
            since = data["seq"]
    return collected, since


async def test_page_and_its_assets_are_local(stack: TinyStack, http: aiohttp.ClientSession) -> None:
    async with http.get(stack.chat_url) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert '<script src="/chat/chat.js">' in page and 'href="/chat/chat.css"' in page
    base = stack.chat_url.rstrip("/")
    assets = {}
    for name, kind in (("chat.js", "application/javascript"), ("chat.css", "text/css")):
        async with http.get(f"{base}/{name}") as response:
            assert response.status == 200 and response.content_type == kind
            assets[name] = await response.text()
    for text in (page, *assets.values()):
        assert not re.search(r"""(src|href)=["']?(https?:)?//|@import|url\(""", text), (
            "remote asset"
        )
    script = assets["chat.js"]
    assert "getElementById" in script
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    # The Bot API still answers on the same port.
    async with http.get(f"{stack.emulator.base_url}/bot{stack.emulator.token}/getMe") as response:
        assert (await response.json())["ok"] is True


async def test_history_before_anything_was_said(
    stack: TinyStack, http: aiohttp.ClientSession
) -> None:
    data = await _get(http, f"{stack.api}/history")
    assert data["messages"] == []
    assert data["user"] == {"id": USER, "first_name": "You"}
    assert data["bot"]["first_name"] == stack.emulator.bot.first_name
    assert data["commands"] == [{"command": "start", "description": "Start over"}]
    # The page's user exists from the start, so the bot may message them first (reminders).
    assert USER in stack.emulator.chats


async def test_send_reply_press_edit_and_toast(
    stack: TinyStack, http: aiohttp.ClientSession
) -> None:
    since = (await _get(http, f"{stack.api}/history"))["seq"]

    sent = await _post(http, f"{stack.api}/send", {"text": "hello"})
    assert sent["message"]["from_bot"] is False and sent["message"]["text"] == "hello"

    events, since = await _events_until(http, stack, since, "message", count=2)
    assert stack.seen_texts == ["hello"]  # aiogram got it as a real update
    reply = [e["message"] for e in events if e["kind"] == "message"][-1]
    assert reply["from_bot"] is True
    assert reply["text"] == "You said: hello"
    assert reply["entities"] == [{"offset": 10, "length": 5, "type": "bold"}]
    assert reply["keyboard"] == [
        [
            {"text": "Done", "callback_data": "done", "url": None},
            {"text": "Why?", "callback_data": "why", "url": None},
        ]
    ]

    pressed = await _post(
        http,
        f"{stack.api}/press",
        {"message_id": reply["message_id"], "callback_data": "done"},
    )
    assert pressed["callback_query_id"]
    events, since = await _events_until(http, stack, since, "callback_answer")
    assert stack.seen_callbacks == ["done"]
    edit = next(e for e in events if e["kind"] == "edit")
    assert edit["message_id"] == reply["message_id"]
    assert edit["message"]["text"] == "Marked as done ✅"
    assert edit["message"]["entities"] == [{"offset": 0, "length": 14, "type": "italic"}]
    assert edit["message"]["keyboard"] == [] and edit["message"]["edit_date"] is not None
    answer = next(e for e in events if e["kind"] == "callback_answer")
    assert answer["message_id"] == reply["message_id"]
    assert answer["detail"]["text"] == "Nice work!" and answer["detail"]["show_alert"] is False

    history = await _get(http, f"{stack.api}/history")
    assert [(m["from_bot"], m["text"]) for m in history["messages"]] == [
        (False, "hello"),
        (True, "Marked as done ✅"),
    ]
    assert history["seq"] == since


async def test_alert_answer_and_commands(stack: TinyStack, http: aiohttp.ClientSession) -> None:
    since = (await _get(http, f"{stack.api}/history"))["seq"]
    await _post(http, f"{stack.api}/send", {"text": "/start"})
    events, since = await _events_until(http, stack, since, "message", count=2)
    assert stack.seen_texts == ["/start"]
    user_message = events[0]["message"]
    assert user_message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]

    await _post(http, f"{stack.api}/send", {"text": "x"})
    events, since = await _events_until(http, stack, since, "message", count=2)
    reply = events[-1]["message"]
    await _post(
        http, f"{stack.api}/press", {"message_id": reply["message_id"], "callback_data": "why"}
    )
    events, since = await _events_until(http, stack, since, "callback_answer")
    assert events[-1]["detail"] == {
        "callback_query_id": events[-1]["detail"]["callback_query_id"],
        "text": "Because the plan says so",
        "show_alert": True,
    }


async def test_user_markup_stays_inert_text(stack: TinyStack, http: aiohttp.ClientSession) -> None:
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)"> & <b>bold?</b>'
    since = (await _get(http, f"{stack.api}/history"))["seq"]
    sent = await _post(http, f"{stack.api}/send", {"text": evil})
    assert sent["message"]["text"] == evil and sent["message"]["entities"] == []

    events, _ = await _events_until(http, stack, since, "message", count=2)
    assert stack.seen_texts == [evil]  # the bot receives exactly what was typed
    reply = events[-1]["message"]
    # The bot escaped it for HTML; the emulator parsed that back to plain text + one entity,
    # so the page gets literal characters to put in text nodes, never markup.
    assert reply["text"] == f"You said: {evil}"
    assert reply["entities"] == [{"offset": 10, "length": len(evil), "type": "bold"}]
    async with http.get(f"{stack.api}/history") as response:
        assert response.content_type == "application/json"


async def test_bad_requests_are_refused(stack: TinyStack, http: aiohttp.ClientSession) -> None:
    await _post(http, f"{stack.api}/send", {"text": "   "}, status=400)
    await _post(http, f"{stack.api}/send", {"text": "x" * 4097}, status=400)
    await _post(http, f"{stack.api}/send", ["not", "an", "object"], status=400)
    await _post(http, f"{stack.api}/press", {"message_id": 999, "callback_data": "done"}, 404)
    mine = await _post(http, f"{stack.api}/send", {"text": "/start"})
    forged = {"message_id": mine["message"]["message_id"], "callback_data": "done"}
    error = await _post(http, f"{stack.api}/press", forged, status=409)
    assert error == {"error": "that message has no such button"}
    async with http.get(f"{stack.api}/events?since=abc") as response:
        assert response.status == 400


async def test_poll_times_out_empty_and_detects_a_reset(
    stack: TinyStack, http: aiohttp.ClientSession
) -> None:
    seq = (await _get(http, f"{stack.api}/history"))["seq"]
    data = await _get(http, f"{stack.api}/events?since={seq}&timeout=0.2")
    assert data == {"reset": False, "seq": seq, "events": []}
    # A page that saw a later seq than the emulator has (restart/reset) must reload.
    data = await _get(http, f"{stack.api}/events?since={seq + 100}&timeout=0.2")
    assert data["reset"] is True


async def test_bot_initiated_message_reaches_a_waiting_poll(
    stack: TinyStack, http: aiohttp.ClientSession, open_requests: Any
) -> None:
    """A reminder the bot sends on its own arrives on a long-poll that is already waiting."""
    seq = (await _get(http, f"{stack.api}/history"))["seq"]
    poll = asyncio.create_task(_get(http, f"{stack.api}/events?since={seq}&timeout=25"))
    await open_requests.wait_open("/chat/api/events")
    assert not poll.done()
    bot = make_bot(stack.emulator)
    try:
        await bot.send_message(USER, "Reminder: call <b>Acme</b>", parse_mode="HTML")
        await bot.send_chat_action(USER, "typing")
    finally:
        await bot.session.close()
    data = await asyncio.wait_for(poll, 10)  # the poll's own timeout is 25 s
    assert data["events"][0]["message"]["text"] == "Reminder: call Acme"


async def test_open_poll_ends_cleanly_when_the_emulator_stops(
    http: aiohttp.ClientSession, open_requests: Any
) -> None:
    emulator = TelegramEmulator()
    mount_webchat(emulator)
    emulator.add_app_hook(open_requests.install)
    await emulator.start()
    url = f"{emulator.base_url}/chat/api/events?since=0"  # the page's 25-s long-poll
    poll = asyncio.create_task(_get(http, url))
    await open_requests.wait_open("/chat/api/events")
    async with asyncio.timeout(10):  # released by stop(), long before the poll's own end
        await emulator.stop()
        assert await poll == {"reset": False, "seq": 0, "events": []}
    with pytest.raises(RuntimeError, match="before start"):
        await emulator.start()
        try:
            mount_webchat(emulator)
        finally:
            await emulator.stop()
