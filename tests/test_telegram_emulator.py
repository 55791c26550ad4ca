"""The Telegram emulator, driven by the real aiogram client over HTTP.

These tests pin the emulator to Telegram's wire behaviour (formats, error codes, polling
semantics) that the bot and the delivery activities rely on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandStart
from aiogram.methods import SendMessage
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageOriginUser,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from emulators.telegram import TEXT_LIMIT, TelegramEmulator, parse_html

USER = 501
OTHER = 502


def _keyboard(*pairs: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=t, callback_data=d) for t, d in pairs]]
    )


class _Session(AiohttpSession):
    """aiogram's session minus the 0.25 s TLS-shutdown grace sleep on close (plain HTTP)."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def _make_bot(emu: TelegramEmulator, token: str | None = None) -> Bot:
    session = _Session(api=TelegramAPIServer.from_base(emu.base_url))
    return Bot(token or emu.token, session=session)


@pytest.fixture
async def emu(open_requests: Any) -> AsyncIterator[TelegramEmulator]:
    emulator = TelegramEmulator(bot_username="leadpilot_test_bot")
    emulator.add_app_hook(open_requests.install)
    async with emulator:
        emulator.add_user(USER, "Ann")
        yield emulator


@pytest.fixture
async def bot(emu: TelegramEmulator) -> AsyncIterator[Bot]:
    client = _make_bot(emu)
    yield client
    await client.session.close()


# --------------------------------------------------------------------------- sending


async def test_send_edit_delete_are_recorded_and_stored(emu: TelegramEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (emu.bot.id, "leadpilot_test_bot", True)

    first = await bot.send_message(
        USER,
        "<b>Acme</b> &amp; co: step 1",
        parse_mode="HTML",
        reply_markup=_keyboard(("Done", "done:1"), ("Skip", "skip:1")),
    )
    second = await bot.send_message(USER, "plain")
    assert isinstance(first, Message)
    assert second.message_id == first.message_id + 1
    assert first.from_user is not None and first.from_user.id == emu.bot.id
    assert first.text == "Acme & co: step 1"
    assert [(e.type, e.offset, e.length) for e in first.entities or []] == [("bold", 0, 4)]
    assert first.reply_markup is not None
    assert first.reply_markup.inline_keyboard[0][1].callback_data == "skip:1"

    call = emu.calls("sendMessage")[0]
    assert call.params["chat_id"] == USER
    assert call.params["parse_mode"] == "HTML"
    assert call.params["reply_markup"]["inline_keyboard"][0][0] == {
        "text": "Done",
        "callback_data": "done:1",
    }
    stored = emu.sent(USER)
    assert [m.text for m in stored] == ["Acme & co: step 1", "plain"]
    assert stored[0].source_text == "<b>Acme</b> &amp; co: step 1"
    assert [b.callback_data for b in stored[0].buttons] == ["done:1", "skip:1"]

    edited = await bot.edit_message_text(
        "<i>Done</i> ✅", chat_id=USER, message_id=first.message_id, parse_mode="HTML"
    )
    assert isinstance(edited, Message) and edited.edit_date is not None
    msg = emu.message(USER, first.message_id)
    assert msg.text == "Done ✅" and msg.reply_markup is None  # omitted markup is removed
    assert [v.text for v in msg.history] == ["Acme & co: step 1"]
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "<i>Done</i> ✅", chat_id=USER, message_id=first.message_id, parse_mode="HTML"
        )

    await bot.edit_message_reply_markup(
        chat_id=USER, message_id=second.message_id, reply_markup=_keyboard(("Again", "again"))
    )
    assert emu.message(USER, second.message_id).button("Again").callback_data == "again"

    assert await bot.delete_message(USER, second.message_id) is True
    assert [m.message_id for m in emu.history(USER)] == [first.message_id]
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(USER, second.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER, message_id=999)

    assert [c.method for c in emu.calls(ok=True)] == [
        "getMe",
        "sendMessage",
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "deleteMessage",
    ]
    kinds = [e.kind for e in emu.events(chat_id=USER)]
    assert kinds == ["message", "message", "edit", "edit", "delete"]


async def test_unknown_chat_and_commands_and_webhook_info(emu: TelegramEmulator, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(999_999, "hello")

    await bot.set_my_commands(
        [
            BotCommand(command="start", description="Start"),
            BotCommand(command="add", description="Add a lead"),
        ]
    )
    assert [c.command for c in await bot.get_my_commands()] == ["start", "add"]
    assert emu.commands()[1] == {"command": "add", "description": "Add a lead"}
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Cmd", description="x")])
    await bot.delete_my_commands()
    assert await bot.get_my_commands() == []

    info = await bot.get_webhook_info()
    assert info.url == "" and info.pending_update_count == 0
    emu.user_says(USER, "hi")
    assert (await bot.get_webhook_info()).pending_update_count == 1
    assert await bot.log_out() is True and await bot.close() is True


async def test_answer_callback_query_is_recorded_once(emu: TelegramEmulator, bot: Bot) -> None:
    sent = await bot.send_message(USER, "pick", reply_markup=_keyboard(("Done", "done:7")))
    query_id = emu.press_button(USER, sent.message_id, "Done")
    assert not emu.was_answered(query_id)
    assert await bot.answer_callback_query(query_id, text="Marked done") is True
    assert emu.was_answered(query_id)
    assert emu.callback_answers[-1].text == "Marked done"
    assert emu.callback_queries[query_id].data == "done:7"
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query_id)
    with pytest.raises(TelegramBadRequest, match="query ID is invalid"):
        await bot.answer_callback_query("123")


# --------------------------------------------------------------------------- validation


async def test_text_length_limit(emu: TelegramEmulator, bot: Bot) -> None:
    await bot.send_message(USER, "x" * TEXT_LIMIT)  # exactly at the limit is fine
    await bot.send_message(USER, "<b>" + "x" * TEXT_LIMIT + "</b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(USER, "x" * (TEXT_LIMIT + 1))
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        # astral characters count twice (UTF-16), like Telegram's entity offsets
        await bot.send_message(USER, "😀" * (TEXT_LIMIT // 2 + 1))
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(USER, "<b> </b>", parse_mode="HTML")
    assert len(emu.sent(USER)) == 2
    assert emu.calls("sendMessage", ok=False)[0].status == 400


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("<b>unclosed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("deal a < b", 'Unsupported start tag "" at byte offset 7'),
        ("line<br>break", 'Unsupported start tag "br"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("Tom & Jerry", 'Unescaped "&" at byte offset 4'),
        ('<a href="https://x.io">x', 'Can\'t find end tag corresponding to start tag "a"'),
        ("x</b>", "Unexpected end tag"),
    ],
)
async def test_malformed_html_is_rejected(
    emu: TelegramEmulator, bot: Bot, html: str, error: str
) -> None:
    with pytest.raises(TelegramBadRequest) as info:
        await bot.send_message(USER, html, parse_mode="HTML")
    assert "can't parse entities: " + error in info.value.message
    assert emu.sent(USER) == []
    await bot.send_message(USER, html)  # without parse_mode the same text is fine


async def test_callback_data_limit_is_in_bytes(emu: TelegramEmulator, bot: Bot) -> None:
    await bot.send_message(USER, "ok", reply_markup=_keyboard(("a", "a" * 64)))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(USER, "too long", reply_markup=_keyboard(("a", "a" * 65)))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        # 33 Cyrillic letters are 33 characters but 66 bytes
        await bot.send_message(USER, "too long", reply_markup=_keyboard(("a", "я" * 33)))
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.edit_message_reply_markup(
            chat_id=USER, message_id=1, reply_markup=_keyboard(("a", "b" * 65))
        )
    assert [m.text for m in emu.sent(USER)] == ["ok"]


def test_parse_html_entities_use_utf16_offsets() -> None:
    text, entities = parse_html(
        '😀 <b>bold <i>both</i></b> <a href="https://e.x/?a=1&amp;b=2">link</a> '
        '<pre><code class="language-python">x = 1</code></pre> &lt;tag&gt; &#x27;q&#39;'
    )
    assert text == "😀 bold both link x = 1 <tag> 'q'"
    assert entities == [
        {"offset": 3, "length": 9, "type": "bold"},
        {"offset": 8, "length": 4, "type": "italic"},
        {"offset": 13, "length": 4, "type": "text_link", "url": "https://e.x/?a=1&b=2"},
        {"offset": 18, "length": 5, "type": "pre", "language": "python"},
    ]
    assert parse_html("Tom & Jerry", strict=False) == ("Tom & Jerry", [])
    assert parse_html("<blockquote expandable>q</blockquote>")[1][0]["type"] == (
        "expandable_blockquote"
    )


# --------------------------------------------------------------------------- faults


async def test_error_replies_map_to_aiogram_exceptions(emu: TelegramEmulator, bot: Bot) -> None:
    emu.fail_next("sendMessage", 429, retry_after=17)
    with pytest.raises(TelegramRetryAfter) as retry:
        await bot.send_message(USER, "a")
    assert retry.value.retry_after == 17
    assert "Too Many Requests: retry after 17" in retry.value.message

    emu.fail_next("sendMessage", 403)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(USER, "b")

    emu.fail_next("sendMessage", 500, count=2)
    for _ in range(2):
        with pytest.raises(TelegramServerError, match="Internal Server Error"):
            await bot.send_message(USER, "c")
    emu.fail_next("editMessageText", 502)
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.edit_message_text("d", chat_id=USER, message_id=1)

    sent = await bot.send_message(USER, "finally")  # faults are used up
    assert [m.message_id for m in emu.sent(USER)] == [sent.message_id]
    statuses = [(c.status, c.retry_after) for c in emu.calls("sendMessage")]
    assert statuses == [(429, 17), (403, None), (500, None), (500, None), (200, None)]


async def test_fault_can_target_one_chat(emu: TelegramEmulator, bot: Bot) -> None:
    emu.add_user(OTHER, "Bob")
    emu.fail_next("*", 500, chat_id=OTHER)
    await bot.send_message(USER, "unaffected")
    with pytest.raises(TelegramServerError):
        await bot.send_message(OTHER, "hit")
    await bot.send_message(OTHER, "ok now")


async def test_block_makes_deliveries_forbidden_until_unblocked(
    emu: TelegramEmulator, bot: Bot
) -> None:
    sent = await bot.send_message(USER, "before")
    emu.block(USER, notify=True)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(USER, "while blocked")
    with pytest.raises(TelegramForbiddenError):
        await bot.edit_message_text("edit", chat_id=USER, message_id=sent.message_id)
    update = emu.pending_updates[-1]["my_chat_member"]
    assert update["new_chat_member"]["status"] == "kicked"
    emu.unblock(USER)
    await bot.send_message(USER, "after")
    assert [m.text for m in emu.sent(USER)] == ["before", "after"]


async def test_dropped_connections(emu: TelegramEmulator, bot: Bot) -> None:
    emu.drop_next("sendMessage")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(USER, "lost request")
    assert emu.sent(USER) == []

    # The response is lost but the message went out: what makes naive retries duplicate.
    emu.drop_next("sendMessage", after_processing=True)
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(USER, "lost response")
    assert [m.text for m in emu.sent(USER)] == ["lost response"]
    assert [c.dropped for c in emu.calls("sendMessage")] == [True, True]

    emu.delay_next("getMe", 0.3)
    started = time.monotonic()
    await bot.get_me()
    assert time.monotonic() - started >= 0.3

    # Slow Telegram: the client gives up, yet the message was delivered.
    emu.delay_next("sendMessage", 2, after_processing=True)
    with pytest.raises(TelegramNetworkError, match="timeout"):
        await bot.send_message(USER, "slow", request_timeout=1)
    assert emu.sent(USER)[-1].text == "slow"


async def test_outage_stop_and_restart_keeps_state(
    emu: TelegramEmulator, bot: Bot, open_requests: Any
) -> None:
    first = await bot.send_message(USER, "before")
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await open_requests.wait_open("getUpdates")
    port = emu.port
    # stop() releases the parked 30 s long-poll: both end long before it would time out.
    async with asyncio.timeout(10):
        await emu.stop()
        assert await poll == []
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(USER, "during outage")
    await emu.start(port=port or 0)
    second = await bot.send_message(USER, "after")
    assert second.message_id == first.message_id + 1
    assert [m.text for m in emu.sent(USER)] == ["before", "after"]


async def test_reset_forgets_everything_but_keeps_ids_increasing(
    emu: TelegramEmulator, bot: Bot
) -> None:
    emu.user_says(USER, "old")
    await bot.send_message(USER, "old reply")
    emu.fail_next("sendMessage", 500)
    last_update = emu.pending_updates[-1]["update_id"]
    emu.reset()
    assert emu.calls() == [] and emu.pending_updates == [] and emu.faults == []
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(USER, "user is gone")
    emu.user_says(USER, "new")
    assert emu.pending_updates[0]["update_id"] > last_update


async def test_flood_limit_answers_429(emu: TelegramEmulator, bot: Bot) -> None:
    emu.set_flood_limit(3, retry_after=2)
    for n in range(3):
        await bot.send_message(USER, f"m{n}")
    with pytest.raises(TelegramRetryAfter) as info:
        await bot.send_message(USER, "one too many")
    assert info.value.retry_after == 2
    assert emu.peak_rate("sendMessage") == 3


async def test_wrong_token_and_unknown_method(emu: TelegramEmulator) -> None:
    strict = TelegramEmulator(token="42:secret")
    async with strict:
        wrong = _make_bot(strict, token="42:other")
        right = _make_bot(strict, token="42:secret")
        try:
            with pytest.raises(TelegramUnauthorizedError):
                await wrong.get_me()
            assert (await right.get_me()).id == 42
        finally:
            await wrong.session.close()
            await right.session.close()
    async with aiohttp.ClientSession() as http:
        url = f"{emu.base_url}/bot{emu.token}/sendSticker"
        async with http.post(url, json={"chat_id": USER}) as resp:
            assert resp.status == 404
            assert await resp.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found: method not found",
            }
        async with http.get(f"{emu.base_url}/bot{emu.token}/getMe") as resp:
            assert (await resp.json())["result"]["id"] == emu.bot.id
        # JSON bodies and case-insensitive method names are accepted too.
        url = f"{emu.base_url}/bot{emu.token}/sendmessage"
        async with http.post(url, json={"chat_id": USER, "text": "via json"}) as resp:
            body = await resp.json()
            assert resp.status == 200 and body["result"]["text"] == "via json"


# --------------------------------------------------------------------------- getUpdates


async def test_long_poll_blocks_until_an_update_arrives(
    emu: TelegramEmulator, bot: Bot, open_requests: Any
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=30))
    await open_requests.wait_open("getUpdates")
    assert not poll.done(), "getUpdates returned before any update existed"
    emu.user_says(USER, "wake up")
    # Woken by the injection: the poll's own timeout (30 s) is far beyond this bound.
    updates = await asyncio.wait_for(poll, 10)
    assert [u.message.text for u in updates if u.message] == ["wake up"]

    started = time.monotonic()
    assert len(await bot.get_updates(offset=updates[-1].update_id + 1, timeout=1)) == 0
    assert time.monotonic() - started >= 0.9  # honoured the timeout, no early return


async def test_offsets_confirm_updates(emu: TelegramEmulator, bot: Bot) -> None:
    for text in ("one", "two", "three"):
        emu.user_says(USER, text)
    first = await bot.get_updates()
    assert [u.message.text for u in first if u.message] == ["one", "two", "three"]
    assert [u.update_id for u in await bot.get_updates()] == [u.update_id for u in first]

    limited = await bot.get_updates(offset=first[0].update_id + 1, limit=1)
    assert [u.message.text for u in limited if u.message] == ["two"]
    assert [u.message.text for u in await bot.get_updates() if u.message] == ["two", "three"]

    assert await bot.get_updates(offset=first[-1].update_id + 1) == []
    emu.user_says(USER, "four")
    emu.user_says(USER, "five")
    latest = await bot.get_updates(offset=-1)
    assert [u.message.text for u in latest if u.message] == ["five"]
    assert len(emu.pending_updates) == 1


async def test_commands_get_entities_and_allowed_updates_filter(
    emu: TelegramEmulator, bot: Bot
) -> None:
    emu.user_says(USER, "/add@leadpilot_test_bot Acme")
    sent = await bot.send_message(USER, "k", reply_markup=_keyboard(("x", "x")))
    await bot.get_updates(allowed_updates=["callback_query"])
    emu.user_says(USER, "ignored, not allowed")
    query_id = emu.press(USER, sent.message_id, "x")
    updates = await bot.get_updates()
    assert updates[0].message is not None and updates[0].message.entities is not None
    entity = updates[0].message.entities[0]
    assert (entity.type, entity.offset, entity.length) == ("bot_command", 0, 23)
    assert updates[1].callback_query is not None and updates[1].callback_query.id == query_id
    assert len(updates) == 2
    assert emu.dropped_updates[0]["message"]["text"] == "ignored, not allowed"


async def test_second_poller_terminates_the_first(
    emu: TelegramEmulator, bot: Bot, open_requests: Any
) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=30))
    await open_requests.wait_open("getUpdates")
    second = asyncio.create_task(bot.get_updates(timeout=30))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(first, 10)
    emu.user_says(USER, "for the survivor")
    assert len(await asyncio.wait_for(second, 10)) == 1


async def test_dispatcher_long_polling_end_to_end(emu: TelegramEmulator, bot: Bot) -> None:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer(
            f"Hi <b>{message.from_user.first_name if message.from_user else '?'}</b>",
            parse_mode="HTML",
            reply_markup=_keyboard(("Done", "done:1"), ("Snooze 1d", "snooze:1")),
        )

    @router.message(Command("help"))
    async def help_(message: Message) -> None:
        await message.answer("help text")

    @router.callback_query(F.data.startswith("done:"))
    async def done(query: CallbackQuery) -> None:
        assert isinstance(query.message, Message)
        await query.message.edit_text("Done ✅")
        await query.answer("Marked as done")

    dp = Dispatcher()
    dp.include_router(router)
    polling = asyncio.create_task(
        dp.start_polling(bot, polling_timeout=5, handle_signals=False, close_bot_session=False)
    )
    try:
        emu.user_says(USER, "/start", first_name="Ann")
        greeting = await emu.wait_for_message(USER, "Hi Ann")
        assert greeting.entities == [{"offset": 3, "length": 3, "type": "bold"}]

        mark = emu.call_count
        emu.user_says(USER, "/help")
        assert (await emu.wait_for_message(USER, since=mark)).text == "help text"

        query_id = emu.press_button(USER, greeting.message_id, "Done")
        answer = await emu.wait_answered(query_id)
        assert answer.text == "Marked as done"
        assert emu.message(USER, greeting.message_id).text == "Done ✅"
        assert emu.message(USER, greeting.message_id).buttons == []
        assert emu.unanswered_queries() == []
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)

    polls = emu.calls("getUpdates")
    assert polls and set(polls[-1].params["allowed_updates"]) == {"message", "callback_query"}
    assert emu.pending_updates == []  # everything was confirmed via offset


# --------------------------------------------------------------------------- webhook


async def test_webhook_push_with_secret_and_webhook_reply(emu: TelegramEmulator, bot: Bot) -> None:
    router = Router()

    @router.message()
    async def echo(message: Message) -> SendMessage:
        return message.answer(f"echo: {message.text}")  # returned → sent as webhook reply

    dp = Dispatcher()
    dp.include_router(router)
    app = web.Application()
    SimpleRequestHandler(dp, bot, handle_in_background=False, secret_token="s3cret").register(
        app, path="/hook"
    )
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        emu.user_says(USER, "manual")
        assert await emu.post_update_to(url, "wrong") == 401
        assert len(emu.pending_updates) == 1  # a refused delivery is not confirmed

        await bot.set_webhook(url, secret_token="s3cret")
        assert emu.webhook.url == url
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        reply = await emu.wait_for_message(USER, "echo: manual")
        emu.user_says(USER, "pushed")
        await emu.wait_for_message(USER, "echo: pushed")
        assert {c.source for c in emu.calls("sendMessage")} == {"webhook-reply"}
        assert reply.reply_markup is None
        assert emu.pending_updates == []

        await bot.delete_webhook()
        assert (await bot.get_webhook_info()).url == ""
    finally:
        await bot.delete_webhook()
        await runner.cleanup()


async def test_forwarded_messages_carry_their_origin(emu: TelegramEmulator, bot: Bot) -> None:
    emu.forward(USER, "Let's talk next week", origin_name="Carol Smith", origin_user_id=777)
    emu.forward(USER, "hidden one", origin_name="Dave")
    emu.forward(USER, "channel post", origin_chat_title="Acme News")
    updates = await bot.get_updates()
    origins = [u.message.forward_origin for u in updates if u.message]
    assert [o.type for o in origins if o] == ["user", "hidden_user", "channel"]
    first = origins[0]
    assert isinstance(first, MessageOriginUser)
    assert (first.sender_user.id, first.sender_user.first_name) == (777, "Carol")
