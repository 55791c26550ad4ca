"""The Telegram send activities against the emulator through the real aiogram client:
error mapping (SPEC §4), the delivery ledger, HTML escaping and message limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramNetworkError, TelegramServerError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.telegram import TelegramActivities
from storage.leads import LeadRepository
from storage.reminders import ReminderRepository
from telegram_ui.callbacks import StepCallback
from telegram_ui.session import make_bot
from workflows.models import PlanState, ReminderKind, ReminderRequest, StepState, StepStatus

OWNER = 777


@pytest.fixture
async def bot(telegram: Any) -> AsyncIterator[Bot]:
    telegram.add_user(OWNER)
    b = make_bot(telegram.token, telegram.base_url)
    yield b
    await b.session.close()


async def reminder(
    pool: asyncpg.Pool, name: str = "Ada", text: str = "Hi", key: str = "k1"
) -> ReminderRequest:
    lead = await LeadRepository(pool).create(
        telegram_id=OWNER, prospect_name=name, prospect_company="ACME & Co"
    )
    step = StepState(
        step_id=1, action_type="email", description="Intro <email>", suggested_text=text, delay_days=0,
        status=StepStatus.SENT, reminder_count=1,
    )  # fmt: skip
    later = StepState(step_id=2, action_type="call", description="Call", delay_days=3)
    state = PlanState(
        lead_id=lead.id, telegram_id=OWNER, steps=[step, later], current_step_id=1, revision=3
    )
    return ReminderRequest(state=state, step_id=1, kind=ReminderKind.FIRST, delivery_key=key)


async def test_send_is_recorded_mirrored_and_never_repeated(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool)
    first = await ActivityEnvironment().run(acts.send_reminder, req)
    again = await ActivityEnvironment().run(acts.send_reminder, req)  # a retry after a lost ack
    assert first.message_id == again.message_id
    assert len(telegram.sent(OWNER)) == 1
    rows = await ReminderRepository(pool).get_for_lead(req.state.lead_id)
    assert [(r.step_id, r.status.value, r.reminder_count, r.message_id) for r in rows] == [
        (1, "sent", 1, first.message_id),
        (2, "pending", 0, None),
    ]  # the whole plan is mirrored with the send
    msg = telegram.last_sent(OWNER)
    assert "Intro <email>" in (msg.text or "") and "ACME & Co" in (msg.text or "")
    data = [b.callback_data for b in msg.buttons]
    assert all(d is not None and len(d.encode()) <= 64 for d in data)
    assert StepCallback.unpack(data[0]).lead_id == req.state.lead_id


async def test_lost_response_sends_at_most_twice(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """The one duplicate the ledger cannot prevent: Telegram got it, the answer was lost."""
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="k-lost")
    telegram.drop_next("sendMessage", after_processing=True)
    with pytest.raises(TelegramNetworkError):
        await ActivityEnvironment().run(acts.send_reminder, req)
    await ActivityEnvironment().run(acts.send_reminder, req)
    await ActivityEnvironment().run(acts.send_reminder, req)
    assert len(telegram.sent(OWNER)) == 2


@pytest.mark.parametrize(
    ("status", "kind", "retryable", "delay"),
    [
        (429, "RateLimited", True, timedelta(seconds=13)),
        (403, "BotBlocked", False, None),
        (400, "BadRequest", False, None),
    ],
)
async def test_error_mapping(
    pool: asyncpg.Pool,
    telegram: Any,
    bot: Bot,
    status: int,
    kind: str,
    retryable: bool,
    delay: timedelta | None,
) -> None:
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key=f"k-{status}")
    telegram.fail_next("sendMessage", status, retry_after=13 if status == 429 else None)
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.send_reminder, req)
    assert err.value.type == kind
    assert err.value.non_retryable is not retryable
    assert err.value.next_retry_delay == delay
    assert telegram.sent(OWNER) == []


async def test_server_error_is_left_to_temporal_backoff(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="k-500")
    telegram.fail_next("sendMessage", 500)
    with pytest.raises(TelegramServerError):  # not an ApplicationError: retried with backoff
        await ActivityEnvironment().run(acts.send_reminder, req)
    await ActivityEnvironment().run(acts.send_reminder, req)
    assert len(telegram.sent(OWNER)) == 1


async def test_hostile_and_huge_text_stays_valid_html_within_limits(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """The emulator rejects bad HTML and >4096 characters, so a success proves both."""
    acts = TelegramActivities(bot, pool)
    req = await reminder(
        pool, name="<b>Bob</b> & </i>" * 20, text="<script>alert(1)</script> & " * 400
    )
    await ActivityEnvironment().run(acts.send_reminder, req)
    msg = telegram.last_sent(OWNER)
    assert "<script>" in (msg.text or "")  # shown literally, not parsed
    assert "Full draft" in [b.text for b in msg.buttons][-2]
