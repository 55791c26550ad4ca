"""The sweep of reminder buttons the immediate clearing missed: steps answered outside
the bot (an operator's `temporal workflow update`, the Temporal UI), cancelled leads,
replaced plans, and edits Telegram refused for a while."""

from __future__ import annotations

import itertools
from typing import Any

import asyncpg
from aiogram import Bot
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.telegram import TelegramActivities
from settings import Settings
from telegram_ui.session import make_bot
from telegram_ui.stale_buttons import SWEEP_EDITS_PER_SECOND, sweep_stale_buttons
from tests.rig import ANYTIME, eventually, plan_rig
from tests.test_engagement_plan import answer, step_is
from tests.test_telegram_activities import bot, mirror, nudge, reminder, step_messages
from worker import running_workers
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.models import StepStatus

__all__ = ["bot"]  # the fixture


def live(telegram: Any) -> list[bool]:
    return [bool(m.buttons) for m in step_messages(telegram)]


async def test_a_step_answered_outside_the_bot_loses_its_buttons_once(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="lead-s1:v1:s1:r0:n1")
    await ActivityEnvironment().run(acts.send_reminder, req)
    assert await sweep_stale_buttons(bot, pool, settled_seconds=0) == 0
    assert live(telegram) == [True]  # the open step's reminder invites a tap
    # The workflow's mirror write after an answer that did not come through the bot.
    await mirror(pool, req, revision=99, status=StepStatus.COMPLETED)
    assert await sweep_stale_buttons(bot, pool, settled_seconds=30) == 0  # the bot's turn
    assert await sweep_stale_buttons(bot, pool, settled_seconds=0) == 1
    assert live(telegram) == [False]
    assert await sweep_stale_buttons(bot, pool, settled_seconds=0) == 0
    assert len(telegram.calls("editMessageReplyMarkup")) == 1


async def test_a_reminder_whose_mirror_write_is_still_to_come_keeps_its_buttons(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """The send recorded its delivery, then the database went away before the rows said
    "sent" (the activity's retry writes them later): the reminder is live, not stale."""
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="lead-s3:v1:s1:r0:n1")
    await ActivityEnvironment().run(acts.send_reminder, req)
    await pool.execute(
        "UPDATE scheduled_reminders SET status = 'pending', message_id = NULL,"
        " reminder_count = 0 WHERE lead_id = $1",
        req.state.lead_id,
    )
    assert await sweep_stale_buttons(bot, pool, settled_seconds=0) == 0
    assert live(telegram) == [True]
    # Snoozed after it (the row knows the message): now it is stale.
    message_id = step_messages(telegram)[0].message_id
    await mirror(pool, req, revision=99, status=StepStatus.PENDING, message_id=message_id)
    assert await sweep_stale_buttons(bot, pool, settled_seconds=0) == 1
    assert live(telegram) == [False]


async def test_the_sweep_edits_at_a_pace_that_leaves_the_limit_to_reminders(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    acts = TelegramActivities(bot, pool)
    for i in range(3):
        req = await reminder(pool, key=f"lead-s6{i}:v1:s1:r0:n1")
        await ActivityEnvironment().run(acts.send_reminder, req)
        await mirror(pool, req, revision=99, status=StepStatus.CANCELLED)
    assert await sweep_stale_buttons(bot, pool, settled_seconds=0) == 3
    edits = [c.at for c in telegram.calls("editMessageReplyMarkup")]
    assert min(b - a for a, b in itertools.pairwise(edits)) >= 0.9 / SWEEP_EDITS_PER_SECOND


async def test_a_chat_that_blocked_the_bot_does_not_hold_up_the_sweep(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """403 on an edit is for good: that message is given up, the next ones are cleared."""
    acts = TelegramActivities(bot, pool)
    reqs = [await reminder(pool, key=f"lead-s5{i}:v1:s1:r0:n1") for i in range(2)]
    for req in reqs:
        await ActivityEnvironment().run(acts.send_reminder, req)
        await mirror(pool, req, revision=99, status=StepStatus.SKIPPED)
    telegram.fail_next("editMessageReplyMarkup", 403, "Forbidden: bot was blocked by the user")
    assert await sweep_stale_buttons(bot, pool, settled_seconds=0) == 1
    assert live(telegram) == [True, False]
    assert await sweep_stale_buttons(bot, pool, settled_seconds=0) == 0
    assert len(telegram.calls("editMessageReplyMarkup")) == 2


async def test_the_sweep_finishes_edits_telegram_refused(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """A 429 left the first reminder's buttons when the nudge went out; a 429 stops the
    sweep too, and the next one clears it. The nudge, newest of an open step, stays live."""
    acts = TelegramActivities(bot, pool, chat_spacing=0.1)
    first = await reminder(pool, key="lead-s2:v1:s1:r0:n1")
    await ActivityEnvironment().run(acts.send_reminder, first)
    telegram.fail_next("editMessageReplyMarkup", 429, retry_after=1)
    await ActivityEnvironment().run(acts.send_reminder, nudge(first, 2))
    assert live(telegram) == [True, True]
    telegram.fail_next("editMessageReplyMarkup", 429, retry_after=1)
    assert await sweep_stale_buttons(bot, pool, settled_seconds=0) == 0
    assert live(telegram) == [True, True]
    assert await sweep_stale_buttons(bot, pool, settled_seconds=0) == 1
    assert live(telegram) == [False, True]


async def test_an_answer_through_temporal_clears_the_reminder_on_the_next_sweep(
    ts_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """`temporal workflow update execute --name complete_step` (or the UI) answers the
    step: the owner's reminder in Telegram stops inviting a tap."""
    async with plan_rig(ts_env.client, db_url, pool, telegram) as rig:
        handle = await rig.start(await rig.new_lead(), approved=True, schedule=ANYTIME)
        state = await rig.wait_state(handle, step_is(1, StepStatus.SENT))
        (message,) = [m for m in telegram.sent(state.telegram_id) if m.buttons]
        await answer(handle, EngagementPlanWorkflow.complete_step, state)
        sweeper = make_bot(telegram.token, telegram.base_url)
        try:
            assert await sweep_stale_buttons(sweeper, pool, settled_seconds=0) == 1
        finally:
            await sweeper.session.close()
        (after,) = [
            m for m in telegram.sent(state.telegram_id) if m.message_id == message.message_id
        ]
        assert not after.buttons


async def test_the_telegram_worker_sweeps_on_its_own(
    dev_env: Any, db_url: str, pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="lead-s4:v1:s1:r0:n1")
    await ActivityEnvironment().run(acts.send_reminder, req)
    await mirror(pool, req, revision=99, status=StepStatus.CANCELLED)  # the lead was closed
    settings = Settings(
        database_url=db_url, telegram_bot_token=telegram.token,
        telegram_api_base=telegram.base_url, worker_queues=["telegram"],
        temporal_address=dev_env.client.service_client.config.target_host,
        stale_buttons_sweep_seconds=0.2,
    )  # fmt: skip
    async with running_workers(settings):

        async def swept() -> bool:
            return not live(telegram)[0]

        await eventually(swept)
    assert live(telegram) == [False]
