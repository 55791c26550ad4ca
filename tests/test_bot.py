"""The bot end to end: the real aiogram dispatcher long-polling the Telegram emulator,
real workers, the Temporal dev server and embedded PostgreSQL (issue 3's scenarios)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from temporalio.testing import WorkflowEnvironment

from bot.app import build_dispatcher, build_webhook_app, run_bot
from settings import Settings
from storage.activity_log import ActivityLogRepository
from storage.leads import LeadRepository
from storage.models import LeadStatus, ReminderStatus
from storage.reminders import ReminderRepository
from storage.users import UserRepository
from telegram_ui.callbacks import LeadAct, LeadCallback, StepAct, StepCallback
from telegram_ui.session import make_bot
from telegram_ui.texts import LEAD_CLOSED
from tests.bot_fixtures import BotStack, bot_stack
from tests.rig import eventually
from workflows.models import PlanStatus, StepStatus

pytestmark = pytest.mark.usefixtures("distinct_lead_ids")  # the dev server is shared

ALICE = 1001
BOB = 2002


@pytest.fixture
async def fast(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> AsyncIterator[BotStack]:
    """A plan day of 2 s: step 1 is due on approval, step 2 four seconds after step 1."""
    async with bot_stack(dev_env, db_url, pool, telegram, day_seconds=2) as stack:
        yield stack


@pytest.fixture
async def slow(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> AsyncIterator[BotStack]:
    """A plan day of 60 s: step 1 is due on approval, nothing else happens by itself."""
    async with bot_stack(dev_env, db_url, pool, telegram, day_seconds=60) as stack:
        yield stack


async def started_plan(stack: BotStack, user: int) -> tuple[int, Any]:
    """/start, /add, Start plan; returns the lead id and the step 1 reminder."""
    await stack.say(user, "/start", "Welcome")
    lead_id, plan = await stack.add_lead(user)
    mark = stack.telegram.call_count
    assert "Plan started" in await stack.tap(user, plan, "Start plan")
    assert "Plan started" in stack.telegram.message(user, plan.message_id).text
    step1 = await stack.telegram.wait_for_message(user, "Step 1 of 6", timeout=15, since=mark)

    async def recorded() -> bool:  # the message lands a moment before the plan records it
        return (await stack.state(lead_id)).steps[0].status == StepStatus.SENT

    await eventually(recorded)
    return lead_id, step1


@pytest.mark.e2e
async def test_salesperson_runs_a_plan_from_telegram(fast: BotStack) -> None:
    tg = fast.telegram
    lead_id, step1 = await started_plan(fast, ALICE)
    assert [b.text for b in step1.buttons][:2] == ["✅ Done", "⏭ Skip"]

    mark = tg.call_count
    assert "done" in (await fast.tap(ALICE, step1, "Done")).lower()
    edited = tg.message(ALICE, step1.message_id)
    assert edited.edited and "✅ Done." in edited.text and "Next: step 2 of 6" in edited.text
    assert edited.buttons == []
    state = await fast.state(lead_id)
    assert state.steps[0].status == StepStatus.COMPLETED and state.current_step_id == 2

    step2 = await tg.wait_for_message(ALICE, "Step 2 of 6", timeout=15, since=mark)
    mark = tg.call_count
    assert "Snoozed 1 day" in await fast.tap(ALICE, step2, "Snooze 1d")
    assert "💤 Snoozed 1 day." in tg.message(ALICE, step2.message_id).text
    state = await fast.state(lead_id)
    assert state.current_step_id == 2 and state.steps[1].snooze_count == 1

    again = await tg.wait_for_message(ALICE, "Step 2 of 6", timeout=15, since=mark)
    mark = tg.call_count
    assert "Skipped" in await fast.tap(ALICE, again, "Skip")
    assert "⏭ Skipped." in tg.message(ALICE, again.message_id).text
    assert "Next: step 3 of 6" in tg.message(ALICE, again.message_id).text

    step3 = await tg.wait_for_message(ALICE, "Step 3 of 6", timeout=20, since=mark)
    assert "stopped" in (await fast.tap(ALICE, step3, "Stop plan")).lower()
    assert "Plan stopped" in tg.message(ALICE, step3.message_id).text

    summary = await fast.handle(lead_id).result()
    assert summary.status == PlanStatus.CANCELLED
    assert (summary.completed, summary.skipped) == (1, 1)
    state = await fast.state(lead_id)
    assert [s.status for s in state.steps] == [
        StepStatus.COMPLETED,
        StepStatus.SKIPPED,
        *[StepStatus.CANCELLED] * 4,
    ]
    rows = await eventually(
        lambda: _rows_if(fast.pool, lead_id, lambda r: r[-1].status == ReminderStatus.CANCELLED)
    )
    assert [r.status for r in rows] == [s.status.value for s in state.steps]
    assert rows[1].snooze_count == 1
    assert tg.unanswered_queries() == []


async def _rows_if(pool: asyncpg.Pool, lead_id: int, ok: Any) -> Any:
    rows = await ReminderRepository(pool).get_for_lead(lead_id)
    return rows if rows and ok(rows) else None


@pytest.mark.e2e
async def test_foreign_replay_and_double_tap(slow: BotStack) -> None:
    tg = slow.telegram
    lead_id, step1 = await started_plan(slow, ALICE)
    done = step1.button("Done").callback_data
    stop = StepCallback(act=StepAct.STOP_PLAN, lead_id=lead_id, version=1, step_id=1).pack()

    # Bob replays Alice's buttons (and a forged stop) from his own chat: nothing changes.
    await slow.say(BOB, "/start", "Welcome")
    for data in (done, stop):
        answer = await tg.wait_answered(tg.press(BOB, step1.message_id, data))
        assert answer.text == "That lead isn't yours." and answer.show_alert
    state = await slow.state(lead_id)
    assert state.status == PlanStatus.ACTIVE and state.steps[0].status == StepStatus.SENT
    assert not tg.message(ALICE, step1.message_id).edited

    # Alice double-taps Done: one state change, the second tap is "Already handled".
    first = tg.press_button(ALICE, step1.message_id, "Done")
    second = tg.press_button(ALICE, step1.message_id, "Done")
    answers = sorted([str((await tg.wait_answered(q, timeout=15)).text) for q in (first, second)])
    assert answers[0].startswith("Already handled"), answers
    assert answers[1].startswith("Marked done"), answers
    state = await slow.state(lead_id)
    assert state.steps[0].status == StepStatus.COMPLETED
    assert state.current_step_id == 2 and state.steps[1].status == StepStatus.PENDING
    log = await ActivityLogRepository(slow.pool).for_lead(lead_id)
    assert [e.activity_type for e in log].count("step_completed") == 1
    assert tg.unanswered_queries() == []


@pytest.mark.e2e
async def test_closed_won_from_lead_detail_cancels_the_plan(slow: BotStack) -> None:
    tg = slow.telegram
    lead_id, _ = await started_plan(slow, ALICE)

    listing = await slow.say(ALICE, "/leads", "Your leads")
    assert "Ada Lovelace" in str(listing.text) and "active" in str(listing.text)
    await slow.tap(ALICE, listing, "Ada Lovelace")
    detail = tg.message(ALICE, listing.message_id)
    assert "Plan v1" in detail.text and "❗ overdue" in detail.text  # step 1 sent, unanswered
    assert "Paused" in await slow.tap(ALICE, detail, "Pause")
    assert "paused" in detail.text and (await slow.state(lead_id)).status == PlanStatus.PAUSED
    assert "Resumed" in await slow.tap(ALICE, detail, "Resume")
    assert (await slow.state(lead_id)).status == PlanStatus.ACTIVE
    await slow.tap(ALICE, detail, "Change status")
    answer = await slow.tap(ALICE, tg.message(ALICE, listing.message_id), "closed_won")
    assert "closed_won" in answer

    summary = await slow.handle(lead_id).result()
    assert summary.status == PlanStatus.CANCELLED and summary.reason == "lead closed_won"
    lead = await LeadRepository(slow.pool).get(lead_id)
    assert lead is not None and lead.status == LeadStatus.CLOSED_WON
    rows = await eventually(
        lambda: _rows_if(
            slow.pool, lead_id, lambda r: all(x.status == ReminderStatus.CANCELLED for x in r)
        )
    )
    assert len(rows) == 6
    log = await ActivityLogRepository(slow.pool).for_lead(lead_id)
    change = next(e for e in log if e.activity_type == "status_change")
    assert change.metadata == {"from": "analyzed", "to": "closed_won"}
    assert "stopped" in str(tg.message(ALICE, listing.message_id).text)
    # A closed lead has no plan: no Regenerate button, and an old one is refused.
    detail = tg.message(ALICE, listing.message_id)
    assert "Regenerate plan" not in [b.text for b in detail.buttons]
    regenerate = LeadCallback(act=LeadAct.REGENERATE, lead_id=lead_id).pack()
    refused = await tg.wait_answered(tg.press(ALICE, listing.message_id, regenerate), timeout=15)
    assert refused.text == LEAD_CLOSED and refused.show_alert  # the LeadClosed refusal
    state = await slow.state(lead_id)
    assert (state.status, state.plan_version) == (PlanStatus.CANCELLED, 1)  # no new run

    # Reopening allows a plan again: Regenerate drafts a fresh one for the same lead.
    await slow.tap(ALICE, detail, "Change status")
    assert "in_progress" in await slow.tap(ALICE, detail, "in_progress")
    mark = tg.call_count
    await slow.tap(ALICE, tg.message(ALICE, listing.message_id), "Regenerate plan")
    await tg.wait_for_message(ALICE, "Engagement plan", since=mark, timeout=15)
    state = await slow.state(lead_id)
    assert (state.status, state.plan_version) == (PlanStatus.AWAITING_APPROVAL, 2)
    assert tg.unanswered_queries() == []


@pytest.mark.e2e
async def test_invalid_timezone_changes_nothing(slow: BotStack) -> None:
    await slow.say(ALICE, "/start", "Welcome")
    users = UserRepository(slow.pool)
    before = await users.get(ALICE)
    reply = await slow.say(ALICE, "/timezone Mars/Base", "Nothing was changed")
    assert "unknown timezone" in str(reply.text) and "Europe/Berlin" in str(reply.text)
    assert await users.get(ALICE) == before
    reply = await slow.say(ALICE, "/window 18:00-09:00", "Nothing was changed")
    assert await users.get(ALICE) == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_requires_the_secret_token(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    port = _free_port()
    settings = Settings(
        database_url=db_url,
        telegram_bot_token=telegram.token,
        telegram_api_base=telegram.base_url,
        bot_mode="webhook",
        webhook_url=f"http://127.0.0.1:{port}/telegram/webhook",
        webhook_secret="s3cret-token",
    )
    bot = make_bot(settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base)
    app = build_webhook_app(build_dispatcher(pool, dev_env.client, settings), bot, settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        url = settings.webhook_url
        assert url is not None
        telegram.user_says(ALICE, "/help")
        assert await telegram.post_update_to(url) == 401
        assert await telegram.post_update_to(url, "wrong-token") == 401
        assert telegram.sent(ALICE) == []
        assert await telegram.post_update_to(url, "s3cret-token") == 200
        await telegram.wait_for_message(ALICE, "/leads")
        assert await UserRepository(pool).get(ALICE) is not None
    finally:
        await runner.cleanup()
        await bot.session.close()
    await asyncio.sleep(0)


@pytest.mark.e2e
async def test_settings_and_vacation_apply_to_running_plans(slow: BotStack) -> None:
    lead_id, _ = await started_plan(slow, ALICE)
    users = UserRepository(slow.pool)

    reply = await slow.bulk(ALICE, "/timezone europe/berlin", "Applied to 1 running plan")
    assert "Timezone: <b>Europe/Berlin</b>" in reply
    await slow.bulk(ALICE, "/window 10:00-17:30", "Applied to")
    reply = await slow.bulk(ALICE, "/workdays off", "Applied to 1 running plan")
    assert "10:00–17:30" in reply and "Workdays only: <b>off</b>" in reply
    user = await users.get(ALICE)
    assert user is not None and user.timezone == "Europe/Berlin" and not user.workdays_only
    schedule = (await slow.state(lead_id)).schedule
    assert (schedule.timezone, schedule.window_start.hour, schedule.workdays_only) == (
        "Europe/Berlin",
        10,
        False,
    )
    assert "Europe/Berlin" in str((await slow.say(ALICE, "/settings", "Settings")).text)

    assert "until" in await slow.bulk(ALICE, "/pause 3", "Paused 1 plan")
    state = await slow.state(lead_id)
    assert state.status == PlanStatus.PAUSED and state.paused_until is not None
    user = await users.get(ALICE)
    assert user is not None and user.paused_until is not None
    await slow.bulk(ALICE, "/resume", "Resumed 1 plan")
    assert (await slow.state(lead_id)).status == PlanStatus.ACTIVE
    user = await users.get(ALICE)
    assert user is not None and user.paused_until is None


@pytest.mark.e2e
async def test_forwarded_message_becomes_a_lead_and_dialogs_cancel(slow: BotStack) -> None:
    tg = slow.telegram
    mark = tg.call_count
    tg.forward(ALICE, "Can you send me pricing?", origin_user_id=555, origin_name="Grace Hopper")
    offer = await tg.wait_for_message(
        ALICE, "Make a lead of this message from Grace Hopper", since=mark
    )
    await slow.tap(ALICE, offer, "Yes")
    plan = await tg.wait_for_message(
        ALICE, "Engagement plan for Grace Hopper", timeout=20, since=mark
    )
    [lead] = await LeadRepository(slow.pool).list_for_owner(ALICE)
    assert lead.original_context == "Can you send me pricing?"

    # Regenerate: a new draft arrives, the old one's buttons are stale.
    old_start = plan.button("Start plan").callback_data
    mark = tg.call_count
    assert "Drafting" in await slow.tap(ALICE, plan, "Regenerate")
    await tg.wait_for_message(ALICE, "Engagement plan for Grace Hopper", timeout=20, since=mark)
    assert "Drafting a new plan" in tg.message(ALICE, plan.message_id).text
    stale = await tg.wait_answered(tg.press(ALICE, plan.message_id, old_start))
    assert stale.text == "Already handled: this plan was replaced"
    assert (await slow.state(lead.id)).plan_version == 2

    # Discard the new draft: the plan ends cancelled.
    newest = tg.last_sent(ALICE)
    assert "Discarded" in await slow.tap(ALICE, newest, "Discard")
    summary = await slow.handle(lead.id).result()
    assert summary.status == PlanStatus.CANCELLED

    # A plain text asks for the name; /cancel leaves that dialog, and /add's too.
    offer = await slow.say(ALICE, "Bob from Acme wants a demo", "Make a lead of this?")
    await slow.tap(ALICE, offer, "Yes")
    assert "Who is the lead" in tg.message(ALICE, offer.message_id).text
    await slow.say(ALICE, "/cancel", "Cancelled.")
    await slow.say(ALICE, "/add", "Send their name")
    await slow.say(ALICE, "Bob", "Company of Bob")
    await slow.say(ALICE, "/cancel", "Cancelled.")
    assert await LeadRepository(slow.pool).count_for_owner(ALICE) == 1
    assert tg.unanswered_queries() == []


@pytest.mark.e2e
async def test_leads_list_is_paginated(slow: BotStack) -> None:
    repo = LeadRepository(slow.pool)
    await slow.say(ALICE, "/start", "Welcome")
    for i in range(7):
        await repo.create(telegram_id=ALICE, prospect_name=f"Lead <{i}> & co")
    first = await slow.say(ALICE, "/leads", "Your leads")
    assert "page 1 of 2" in str(first.text) and "Lead <6> & co" in str(first.text)
    assert "no plan" in str(first.text)
    await slow.tap(ALICE, first, "Next")
    second = slow.telegram.message(ALICE, first.message_id)
    assert "page 2 of 2" in second.text and "Lead <0> & co" in second.text
    assert str((await slow.say(BOB, "/leads", "no leads")).text).startswith("You have no leads")
    # Unknown commands get a hint; a button nobody handles is still answered.
    await slow.say(BOB, "/frobnicate", "/help")
    answer = await slow.telegram.wait_answered(slow.telegram.press(BOB, first.message_id, "zz:1"))
    assert answer.text == "This button is no longer valid."


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_run_bot_serves_and_stops_gracefully(
    mode: str, dev_env: WorkflowEnvironment, db_url: str, telegram: Any
) -> None:
    """The process entry point: commands menu set, updates handled, clean stop."""
    port = _free_port()
    settings = Settings(
        database_url=db_url,
        temporal_address=dev_env.client.service_client.config.target_host,
        telegram_bot_token=telegram.token,
        telegram_api_base=telegram.base_url,
        bot_mode=mode,  # type: ignore[arg-type]
        webhook_url=f"http://127.0.0.1:{port}/hook",
        webhook_secret="another-secret",
        webhook_host="127.0.0.1",
        webhook_port=port,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_bot(settings, stop))
    try:
        telegram.user_says(ALICE, "/start")
        await telegram.wait_for_message(ALICE, "Welcome", timeout=15)
        menu = {c["command"] for c in telegram.commands()}
        assert {"add", "leads", "settings", "timezone", "window", "workdays"} <= menu
        assert {"pause", "resume", "cancel", "help"} <= menu
        if mode == "webhook":
            assert telegram.webhook.url == settings.webhook_url
            assert telegram.webhook.max_connections == 100
            # Telegram hears 200 once the update is handled: after the reply went out.
            async def confirmed() -> bool:
                return bool(telegram.webhook_deliveries)

            await eventually(confirmed)
            assert telegram.webhook_deliveries[-1].status == 200
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@pytest.mark.e2e
async def test_a_tap_while_no_worker_runs_is_answered_and_applied_later(slow: BotStack) -> None:
    """Workers down (a deploy): the tap is answered within seconds, not left spinning, and
    the plan applies it once a worker is back."""
    lead_id, step1 = await started_plan(slow, ALICE)
    await slow.rig.stop_workers()
    answer = await slow.tap(ALICE, step1, "Done")
    assert "taking longer than usual" in answer.lower()
    slow.rig.start_workers()
    state = await eventually(
        lambda: _state_if(slow, lead_id, lambda s: s.steps[0].status == StepStatus.COMPLETED)
    )
    assert state.current_step_id == 2


async def _state_if(stack: BotStack, lead_id: int, check: Any) -> Any:
    state = await stack.state(lead_id)
    return state if check(state) else None
