"""A bot journey at real day length (DAY_SECONDS=86400) on the time-skipping server.

Why: every other bot test compresses a plan day to seconds, where send windows, workdays
and timezones cannot apply. Here the owner sets them through the bot's own commands, and
the reminder must reach the Telegram emulator at the right local time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from storage.models import ReminderStatus
from storage.reminders import ReminderRepository
from storage.users import UserRepository
from tests.bot_fixtures import BotStack, bot_stack
from tests.rig import eventually
from workflows.models import PlanStatus, StepStatus

ALICE = 1001
TOKYO = ZoneInfo("Asia/Tokyo")  # UTC+9: Saturday 08:00 there is still Friday in UTC
# The test server's clock is locked while a test polls, so only real seconds of worker
# latency pass after a skip: minutes tell "at its due time" from "hours late".
SLACK = timedelta(minutes=5)


@pytest.fixture
async def real_day(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> AsyncIterator[BotStack]:
    async with bot_stack(ts_env, db_url, pool, telegram, day_seconds=86400) as stack:
        yield stack


async def skip_to(env: WorkflowEnvironment, moment: datetime) -> None:
    """Move the test server's clock to `moment`; timers due on the way fire in order."""
    now = await env.get_current_time()
    assert moment > now, (moment, now)
    await env.sleep((moment - now).total_seconds())


def next_saturday_8am(now: datetime) -> datetime:
    local = now.astimezone(TOKYO)
    days = (5 - local.weekday()) % 7 or 7
    return datetime.combine(local.date() + timedelta(days=days), time(8), tzinfo=TOKYO)


def step_messages(stack: BotStack) -> list[str]:
    return [m.text for m in stack.telegram.sent(ALICE) if m.text and "Step 1 of 6" in m.text]


@pytest.mark.e2e
async def test_reminder_on_saturday_arrives_monday_at_window_start_in_owner_timezone(
    real_day: BotStack, ts_env: WorkflowEnvironment
) -> None:
    stack = real_day
    await stack.say(ALICE, "/start", "Welcome")
    await stack.bulk(ALICE, "/timezone asia/tokyo", "Applied to 0 running plans")
    await stack.bulk(ALICE, "/window 10:00-17:00", "Applied to 0 running plans")
    reply = await stack.bulk(ALICE, "/workdays on", "Applied to 0 running plans")
    assert "Asia/Tokyo" in reply and "10:00–17:00" in reply and "Workdays only: <b>on</b>" in reply
    user = await UserRepository(stack.pool).get(ALICE)
    assert user is not None
    assert (user.timezone, user.window_start, user.window_end, user.workdays_only) == (
        "Asia/Tokyo",
        time(10),
        time(17),
        True,
    )

    # The owner approves on a Saturday morning in Tokyo (Friday night in UTC). Step 1 is
    # due at once, which is outside the window and on a weekend: Monday 10:00 Tokyo.
    saturday = next_saturday_8am(await ts_env.get_current_time())
    monday_10 = datetime.combine(saturday.date() + timedelta(days=2), time(10), tzinfo=TOKYO)
    lead_id, plan = await stack.add_lead(ALICE)
    await skip_to(ts_env, saturday)
    assert "Plan started" in await stack.tap(ALICE, plan, "Start plan")
    started = stack.telegram.message(ALICE, plan.message_id).text
    assert f"Next: step 1 of 6 on {monday_10.strftime('%a %d %b')} 10:00" in started, started

    state = await stack.state(lead_id)
    assert state.status == PlanStatus.ACTIVE and state.schedule.timezone == "Asia/Tokyo"
    assert state.approved_at is not None and state.approved_at.astimezone(TOKYO).weekday() == 5
    step = state.steps[0]
    assert (step.status, step.due_at) == (StepStatus.PENDING, monday_10)
    [first, *_] = await ReminderRepository(stack.pool).get_for_lead(lead_id)
    assert (first.step_id, first.status, first.due_at) == (1, ReminderStatus.PENDING, monday_10)

    # The whole weekend and Monday morning before the window: nothing is sent.
    await skip_to(ts_env, monday_10 - timedelta(minutes=5))
    assert step_messages(stack) == []
    [first, *_] = await ReminderRepository(stack.pool).get_for_lead(lead_id)
    assert first.status == ReminderStatus.PENDING and first.reminder_count == 0

    # At the window start on Monday the reminder arrives in Telegram and the row says so.
    await skip_to(ts_env, monday_10 + timedelta(minutes=1))
    reminder = await stack.telegram.wait_for_message(ALICE, "Step 1 of 6", timeout=30)
    assert "Ada Lovelace" in reminder.text
    assert [b.text for b in reminder.buttons][:2] == ["✅ Done", "⏭ Skip"]

    async def sent_row() -> Any:
        rows = await ReminderRepository(stack.pool).get_for_lead(lead_id)
        return rows[0] if rows and rows[0].status == ReminderStatus.SENT else None

    row = await eventually(sent_row)
    assert (row.due_at, row.reminder_count, row.message_id) == (
        monday_10,
        1,
        reminder.message_id,
    )
    assert row.last_reminded_at is not None
    assert timedelta(0) <= row.last_reminded_at - monday_10 < SLACK
    sent_local = row.last_reminded_at.astimezone(TOKYO)
    assert sent_local.weekday() == 0 and time(10) <= sent_local.time() < time(17)
    assert len(step_messages(stack)) == 1
