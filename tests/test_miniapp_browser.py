"""The Mini App in headless Chromium, opened from the web chat as a Telegram user would:
the whole stack (bot, workers, Temporal dev server, PostgreSQL, the Telegram emulator with
its web chat) and the Mini App server. See the due follow-up, tap Done, change the
timezone; screenshots in light and dark theme go to tests/artifacts/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from playwright.async_api import Browser, FrameLocator, expect

from bot.app import run_bot
from emulators.telegram import TelegramEmulator
from emulators.webchat import DEFAULT_USER_ID, mount_webchat
from services.plans import PlanService
from settings import Settings
from storage.models import ReminderStatus
from storage.reminders import ReminderRepository
from telegram_ui.session import make_bot
from tests.rig import ANYTIME, eventually, plan_rig
from tests.test_webchat_browser import ARTIFACTS, ChatPage
from webapp.server import MiniApp, build_app
from workflows.models import StepStatus

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("distinct_lead_ids"),
]
USER = DEFAULT_USER_ID


@pytest.fixture
async def web_telegram() -> AsyncIterator[TelegramEmulator]:
    emulator = TelegramEmulator(auto_create_chats=True)
    mount_webchat(emulator, first_name="Sam")
    await emulator.start()
    yield emulator
    await emulator.stop()


async def test_open_from_web_chat_see_due_follow_up_tap_done_and_move_plans(
    browser: Browser,
    dev_env: Any,
    db_url: str,
    pool: asyncpg.Pool,
    web_telegram: TelegramEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = Settings(
        database_url=db_url,
        temporal_address=dev_env.client.service_client.config.target_host,
        telegram_bot_token=web_telegram.token,
        telegram_api_base=web_telegram.base_url,
        day_seconds=60,
        miniapp_telegram_js=f"{web_telegram.base_url}/chat/telegram-web-app.js",
    )
    edit_bot = make_bot(base.telegram_bot_token.get_secret_value(), base.telegram_api_base)
    runner = web.AppRunner(
        build_app(MiniApp(pool, PlanService(dev_env.client, pool, base), edit_bot, base))
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    app_url = f"http://127.0.0.1:{port}/app"
    settings = base.model_copy(update={"miniapp_url": app_url})
    # The workers build reminder keyboards from the environment (MINIAPP_URL).
    monkeypatch.setenv("MINIAPP_URL", app_url)
    monkeypatch.setenv("TELEGRAM_API_BASE", web_telegram.base_url)

    stop = asyncio.Event()
    try:
        async with plan_rig(dev_env.client, db_url, pool, web_telegram, day_seconds=60) as rig:
            bot = asyncio.create_task(run_bot(settings, stop))
            context = await browser.new_context(viewport={"width": 1200, "height": 860})
            try:
                page = await context.new_page()
                page.set_default_timeout(20_000)
                chat = ChatPage(page, f"{web_telegram.base_url}/chat")

                # The bot registers the chat's menu button on start-up.
                await eventually(
                    lambda: _true(bool(web_telegram.calls("setChatMenuButton", ok=True)))
                )
                lead_id = await rig.new_lead(USER, "Ada Lovelace")
                handle = await rig.start(
                    lead_id, USER, approved=True, schedule=ANYTIME, day_seconds=60
                )
                await chat.open()
                await expect(page.get_by_test_id("menu-app")).to_be_visible()
                reminder = await chat.wait_bot_message("Step 1 of 6", timeout=20_000)
                await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)

                # Open the Mini App from the reminder's button: a side panel, signed in.
                await reminder.get_by_test_id("web-app-button").click()
                panel = page.get_by_test_id("app-panel")
                await expect(panel).to_be_visible()
                app = page.frame_locator("[data-testid=app-frame]")
                # Opened at the lead (?lead=…): the detail, with the Back button shown.
                await expect(app.get_by_test_id("lead-detail")).to_contain_text("Ada Lovelace")
                await expect(page.get_by_test_id("app-back")).to_be_visible()
                await page.get_by_test_id("app-back").click()

                item = app.get_by_test_id("due-item").filter(has_text="Ada Lovelace")
                await expect(item).to_be_visible()
                await expect(item).to_contain_text("Step 1 of 6")
                await expect(item).to_contain_text("❗ overdue")
                await expect(panel).to_have_attribute("data-ready", "true")
                await _screenshot(page, "miniapp_light.png")
                await page.get_by_test_id("app-theme").click()
                await expect(app.locator("html")).to_have_attribute("data-scheme", "dark")
                await _screenshot(page, "miniapp_dark.png")
                await page.get_by_test_id("app-theme").click()

                await item.get_by_test_id("done").click()
                await expect(app.get_by_test_id("toast")).to_have_attribute(
                    "data-last", "Marked done ✅"
                )
                # The list reloads: step 1 is gone, step 2 (due in two plan days) is next.
                await expect(item.filter(has_text="Step 1 of 6")).to_have_count(0)
                await expect(item.filter(has_text="Step 2 of 6")).to_be_visible()
                assert int(await panel.get_attribute("data-haptics") or 0) >= 1

                # The chat's reminder message changed too, as after a tap in the chat.
                await expect(reminder).to_have_attribute("data-edited", "true")
                await expect(chat.text_of(reminder)).to_contain_text("✅ Done.")
                state = await rig.wait_state(handle, lambda s: s.current_step_id == 2)
                assert state.steps[0].status == StepStatus.COMPLETED

                async def mirrored() -> bool:
                    rows = await ReminderRepository(pool).get_for_lead(lead_id)
                    return rows[0].status == ReminderStatus.COMPLETED

                await eventually(mirrored)

                # Settings: a new timezone, saved with Telegram's main button, moves the plan.
                await app.get_by_test_id("tab-settings").click()
                timezone = app.get_by_test_id("timezone")
                await timezone.fill("America/New_York")
                main_button = page.get_by_test_id("app-main-button")
                await expect(main_button).to_have_text("Save settings")
                await main_button.click()
                await expect(app.get_by_test_id("toast")).to_have_attribute(
                    "data-last", "Saved; 1 running plan moved"
                )
                state = await rig.wait_state(
                    handle, lambda s: s.schedule.timezone == "America/New_York"
                )
                await _screenshot_dark_pipeline(page, app)
                assert chat.errors == []
            finally:
                await context.close()
                stop.set()
                await bot
    finally:
        await runner.cleanup()
        await edit_bot.session.close()


async def _true(value: bool) -> bool:
    return value


async def _screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name))


async def _screenshot_dark_pipeline(page: Any, app: FrameLocator) -> None:
    await page.get_by_test_id("app-theme").click()
    await app.get_by_test_id("tab-pipeline").click()
    await expect(app.get_by_test_id("lead-row").first).to_be_visible()
    await expect(app.locator("html")).to_have_attribute("data-scheme", "dark")
    await _screenshot(page, "miniapp_pipeline_dark.png")
