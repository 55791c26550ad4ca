"""The web chat page in a real headless Chromium (Debian's package), driven by Playwright.

Why: the HTTP tests prove the API; only a browser proves the page a newcomer sees —
rendering of the bot's formatting, buttons that send callback queries, live edits and
toasts, and that typed markup stays text. ``ChatPage`` is the page object later
full-stack tests (add a lead, start a plan, press Done on a reminder) build on.

Needs ``apt-get install -y chromium`` (``/usr/bin/chromium``); never ``playwright install``.
The ``browser`` fixture (tests/conftest.py) skips without it, and fails under ``CI``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from playwright.async_api import Browser, Locator, Page, expect

from emulators.telegram import TelegramEmulator
from emulators.webchat import mount_webchat
from tests.test_webchat import USER, TinyStack, make_bot, tiny_stack

ARTIFACTS = Path(__file__).with_name("artifacts")


class ChatPage:
    """Page object for /chat: what a user can do and see, in the page's own terms."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda msg: self.errors.append(msg.text) if msg.type == "error" else None,
        )

    async def open(self) -> None:
        await self.page.goto(self.url)
        await expect(self.page.locator("body[data-ready=true]")).to_have_count(1)

    def messages(self, sender: Literal["bot", "user"] | None = None) -> Locator:
        selector = "[data-testid=message]" + (f"[data-from={sender}]" if sender else "")
        return self.page.locator(selector)

    def message(self, containing: str, sender: Literal["bot", "user"] | None = "bot") -> Locator:
        """The latest message whose text contains ``containing``."""
        return self.messages(sender).filter(has_text=containing).last

    def text_of(self, message: Locator) -> Locator:
        return message.get_by_test_id("message-text")

    def button(self, message: Locator, text: str) -> Locator:
        return message.get_by_role("button", name=text, exact=True)

    async def send(self, text: str) -> None:
        """Type ``text`` in the composer and press Enter (commands work the same way)."""
        count = await self.messages("user").count()
        await self.page.get_by_test_id("composer").fill(text)
        await self.page.get_by_test_id("composer").press("Enter")
        await expect(self.messages("user")).to_have_count(count + 1)

    def by_id(self, message_id: int | str) -> Locator:
        return self.page.locator(f"[data-testid=message][data-message-id='{message_id}']")

    async def wait_bot_message(self, containing: str, timeout: float = 10_000) -> Locator:
        """Wait for a bot message containing the text; the locator stays on it across edits."""
        message = self.message(containing)
        await expect(message).to_be_visible(timeout=timeout)
        return self.by_id(await message.get_attribute("data-message-id") or "")

    async def press(self, message: Locator, button_text: str) -> None:
        await self.button(message, button_text).click()

    async def expect_toast(self, text: str) -> None:
        """The latest toast had ``text`` (it fades after 3.5 s, the attribute stays)."""
        await expect(self.page.get_by_test_id("toast")).to_have_attribute("data-last", text)

    async def expect_alert(self, text: str) -> None:
        alert = self.page.get_by_test_id("alert")
        await expect(alert).to_be_visible()
        await expect(alert).to_contain_text(text)

    async def dismiss_alert(self) -> None:
        await self.page.get_by_test_id("alert").get_by_role("button", name="OK").click()
        await expect(self.page.get_by_test_id("alert")).to_be_hidden()

    async def expect_connection(self, online: bool, timeout: float = 15_000) -> None:
        """The header says whether the page reaches the server ("connecting…" when not);
        the page retries with a backoff of up to 5 s, hence the bound."""
        status = expect(self.page.locator("#status"))
        offline = re.compile(r"\boffline\b")
        if online:
            await status.not_to_have_class(offline, timeout=timeout)
        else:
            await status.to_have_class(offline, timeout=timeout)

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        await self.page.screenshot(path=str(path))
        return path


@pytest.fixture
async def stack() -> AsyncIterator[TinyStack]:
    async with tiny_stack() as running:
        yield running


@pytest.fixture
async def chat(browser: Browser, stack: TinyStack) -> AsyncIterator[ChatPage]:
    context = await browser.new_context(viewport={"width": 900, "height": 720})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    chat_page = ChatPage(page, stack.chat_url)
    await chat_page.open()
    try:
        yield chat_page
    finally:
        await context.close()


async def test_talk_press_edit_toast(chat: ChatPage, stack: TinyStack) -> None:
    page = chat.page
    # A fresh chat invites the user to /start, as Telegram does.
    await page.get_by_test_id("start").click()
    await chat.wait_bot_message("Hi! Send me anything.")
    assert stack.seen_texts == ["/start"]

    # Typed markup is shown as text: no element is created and no handler runs.
    evil = "<img src=x onerror=\"window.__xss='img'\"><script>window.__xss='script'</script>"
    await chat.send(evil)
    echoed = await chat.wait_bot_message("You said:")
    await expect(chat.text_of(echoed).locator("b")).to_have_text(evil)
    assert await page.locator("#messages img, #messages script").count() == 0
    assert await page.evaluate("window.__xss") is None

    await chat.send("Call Acme about the pilot")
    reply = await chat.wait_bot_message("You said: Call Acme")
    await expect(chat.text_of(reply).locator("b")).to_have_text("Call Acme about the pilot")
    await expect(chat.button(reply, "Done")).to_be_visible()

    # An alert answer is a dialog, not a toast.
    await chat.press(reply, "Why?")
    await chat.expect_alert("Because the plan says so")
    await chat.dismiss_alert()

    await chat.press(reply, "Done")
    await chat.expect_toast("Nice work!")
    edited = reply  # pinned by message id, so it follows the edit
    await expect(chat.text_of(edited)).to_have_text("Marked as done ✅")
    await expect(chat.text_of(edited).locator("i")).to_have_text("Marked as done")
    await expect(edited).to_have_attribute("data-edited", "true")
    await expect(edited.get_by_test_id("keyboard")).to_have_count(0)
    await expect(page.get_by_test_id("toast")).to_have_css("opacity", "1")  # faded in
    assert stack.seen_callbacks == ["why", "done"]

    path = await chat.screenshot("webchat.png")
    assert path.stat().st_size > 10_000
    assert chat.errors == []


async def test_bot_initiated_message_appears_live(chat: ChatPage, stack: TinyStack) -> None:
    """A message the bot sends on its own (a reminder) shows up without a reload."""
    bot = make_bot(stack.emulator)
    try:
        await bot.send_message(
            USER,
            "⏰ Reminder: <b>Acme</b> — <a href='https://example.com/acme'>open lead</a>\n"
            "<code>step 1/3</code> <tg-spoiler>secret</tg-spoiler>",
            parse_mode="HTML",
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[[InlineKeyboardButton(text="Done", callback_data="done")]]
            ),
        )
    finally:
        await bot.session.close()
    reminder = await chat.wait_bot_message("Reminder")
    text = chat.text_of(reminder)
    await expect(text.locator("b")).to_have_text("Acme")
    await expect(text.locator("a")).to_have_attribute("href", "https://example.com/acme")
    await expect(text.locator("code")).to_have_text("step 1/3")
    await expect(text.locator(".spoiler")).to_have_text("secret")
    await chat.press(reminder, "Done")
    await chat.expect_toast("Nice work!")
    await expect(chat.text_of(reminder)).to_have_text("Marked as done ✅")
    assert chat.errors == []


async def test_page_recovers_from_emulator_restart_and_reset(browser: Browser) -> None:
    """``leadpilot dev`` may restart or reset the emulator under an open page."""
    emulator = TelegramEmulator()
    mount_webchat(emulator)
    await emulator.start()
    context = await browser.new_context()
    bot = make_bot(emulator)
    try:
        chat = ChatPage(await context.new_page(), f"{emulator.base_url}/chat")
        await chat.open()
        port = emulator.port or 0
        await emulator.stop()
        await chat.expect_connection(online=False)  # the page noticed the outage
        await emulator.start(port=port)
        await bot.send_message(USER, "after restart")
        await chat.wait_bot_message("after restart", timeout=15_000)
        await chat.expect_connection(online=True)

        emulator.reset()
        emulator.add_user(USER)
        await bot.send_message(USER, "after reset")
        await chat.wait_bot_message("after reset", timeout=15_000)
        await expect(chat.messages()).to_have_count(1)
    finally:
        await bot.session.close()
        await context.close()
        await emulator.stop()
