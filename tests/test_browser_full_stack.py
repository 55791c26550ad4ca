"""The newcomer's path, in headless Chromium, against the whole stack: the web chat page,
the bot, the worker, the Temporal dev server and PostgreSQL. Add a lead, start its plan,
receive the first reminder, tap Done and see the message change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, expect

from bot.app import run_bot
from emulators.telegram import TelegramEmulator
from emulators.webchat import DEFAULT_USER_ID, mount_webchat
from settings import Settings
from storage.reminders import ReminderRepository
from tests.rig import plan_rig
from tests.test_webchat_browser import ChatPage

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("distinct_lead_ids"),
]


@pytest.fixture
async def web_telegram() -> AsyncIterator[TelegramEmulator]:
    emulator = TelegramEmulator(auto_create_chats=True)
    mount_webchat(emulator)
    await emulator.start()
    yield emulator
    await emulator.stop()


async def test_add_lead_start_plan_and_answer_a_reminder_in_the_browser(
    browser: Browser,
    dev_env: Any,
    db_url: str,
    pool: asyncpg.Pool,
    web_telegram: TelegramEmulator,
) -> None:
    settings = Settings(
        database_url=db_url,
        temporal_address=dev_env.client.service_client.config.target_host,
        telegram_bot_token=web_telegram.token,
        telegram_api_base=web_telegram.base_url,
        day_seconds=60,  # a demo day: step 1 (day 0) is due as soon as the plan starts
    )
    stop = asyncio.Event()
    async with plan_rig(
        dev_env.client, db_url, pool, web_telegram, day_seconds=settings.day_seconds
    ):
        bot = asyncio.create_task(run_bot(settings, stop))
        context = await browser.new_context(viewport={"width": 900, "height": 900})
        try:
            page = await context.new_page()
            page.set_default_timeout(20_000)
            chat = ChatPage(page, f"{web_telegram.base_url}/chat")
            await chat.open()

            await chat.send("/start")
            await chat.wait_bot_message("Welcome")
            await chat.send("/add")
            await chat.wait_bot_message("Who is the lead")
            await chat.send("Ada <Lovelace>")
            await chat.wait_bot_message("Company")
            await chat.send("Analytical Engines & Co")
            await chat.wait_bot_message("What do you know")
            await chat.send("Met at PyCon, wants a demo")

            plan = await chat.wait_bot_message("Engagement plan")
            await expect(chat.text_of(plan)).to_contain_text("Ada <Lovelace>")
            await chat.press(plan, "▶️ Start plan")

            reminder = await chat.wait_bot_message("Follow-up due")
            await expect(chat.button(reminder, "✅ Done")).to_be_visible()
            await chat.press(reminder, "✅ Done")
            await expect(reminder).to_have_attribute("data-edited", "true")
            await expect(chat.text_of(reminder)).to_contain_text("Done")
            await expect(reminder.get_by_test_id("keyboard")).to_have_count(0)
            await chat.screenshot("full_stack.png")
            assert chat.errors == []
        finally:
            await context.close()
            stop.set()
            await bot

    rows = await pool.fetch("SELECT id FROM lead_registry WHERE telegram_id = $1", DEFAULT_USER_ID)
    assert len(rows) == 1
    steps = await ReminderRepository(pool).get_for_lead(rows[0]["id"])
    assert steps[0].status.value == "completed"
