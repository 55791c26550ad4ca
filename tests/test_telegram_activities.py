"""The Telegram send activities against the emulator through the real aiogram client:
error mapping (SPEC §4), the leased delivery ledger, "still wanted" checks, per-chat
pacing, HTML escaping and message limits."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramNetworkError, TelegramServerError
from aiogram.methods.base import Response
from aiogram.types import Message
from temporalio.common import Priority
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory, CancelledError
from temporalio.testing import ActivityEnvironment

from activities.mirror import state_rows
from activities.telegram import TelegramActivities
from storage.deliveries import DeliveryLedger
from storage.leads import LeadRepository
from storage.models import LeadStatus
from storage.reminders import ReminderRepository
from telegram_ui.callbacks import StepCallback
from telegram_ui.session import make_bot
from tests.faults.scenarios import reminder_step
from tests.rig import eventually
from workflows.models import (
    NoticeKind,
    NoticeRequest,
    NotSentReason,
    PlanState,
    ReminderKind,
    ReminderRequest,
    ReminderResult,
    StepState,
    StepStatus,
)

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


async def test_lost_response_is_resent_only_after_the_lease(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """The one duplicate that remains: Telegram delivered, the answer was lost, and the
    lease ran out. Before that, a retry steps back (benign, retry after the lease)."""
    acts = TelegramActivities(bot, pool, request_timeout=2, lease_margin=1)
    req = await reminder(pool, key="k-lost")
    telegram.drop_next("sendMessage", after_processing=True)
    with pytest.raises(TelegramNetworkError):
        await ActivityEnvironment().run(acts.send_reminder, req)
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.send_reminder, req)
    assert err.value.type == "DeliveryLeased" and not err.value.non_retryable
    assert err.value.category == ApplicationErrorCategory.BENIGN
    assert err.value.next_retry_delay is not None
    assert timedelta(0) < err.value.next_retry_delay <= timedelta(seconds=3.5)
    assert len(telegram.sent(OWNER)) == 1
    await asyncio.sleep(err.value.next_retry_delay.total_seconds())
    await ActivityEnvironment().run(acts.send_reminder, req)
    await ActivityEnvironment().run(acts.send_reminder, req)
    assert len(telegram.sent(OWNER)) == 2


async def test_a_send_still_in_flight_is_never_doubled(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """Telegram holds the answer; a second attempt (Temporal gave up on the first) arrives
    meanwhile: it must not send. The first attempt heartbeats while it waits."""
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="k-held")
    telegram.delay_next("sendMessage", 4.5, after_processing=True)
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    first = asyncio.create_task(env.run(acts.send_reminder, req))
    await eventually(lambda: _ready(telegram.sent(OWNER)))  # delivered, answer held
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.send_reminder, req)
    assert err.value.type == "DeliveryLeased"
    result = await first
    assert beats, "no heartbeat while Telegram held the answer"
    again = await ActivityEnvironment().run(acts.send_reminder, req)
    assert again.message_id == result.message_id
    assert len(telegram.sent(OWNER)) == 1


async def test_a_send_abandoned_by_temporal_is_still_recorded(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """Temporal cancels the attempt (timed out) while Telegram is delivering: the request
    is allowed to finish and recorded, so the retry does not send a second copy."""
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="k-abandoned")
    telegram.delay_next("sendMessage", 3, after_processing=True)
    env = ActivityEnvironment()
    run = asyncio.create_task(env.run(acts.send_reminder, req))
    await eventually(lambda: _ready(telegram.sent(OWNER)))  # delivered, answer held
    env.cancel()
    with pytest.raises((asyncio.CancelledError, CancelledError)):
        await run
    again = await ActivityEnvironment().run(acts.send_reminder, req)
    assert len(telegram.sent(OWNER)) == 1
    assert again.message_id == telegram.sent(OWNER)[0].message_id


async def _ready(value: Any) -> Any:
    return value


async def test_http_timeout_is_shorter_than_the_activity_timeout(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """A Telegram that never answers ends the attempt by the Bot's request timeout (15 s
    in production, below the 30-s start-to-close), not by Temporal's."""
    acts = TelegramActivities(bot, pool, request_timeout=1)
    req = await reminder(pool, key="k-hang")
    telegram.delay_next("sendMessage", 6)
    with pytest.raises(TelegramNetworkError):
        await ActivityEnvironment().run(acts.send_reminder, req)
    assert TelegramActivities(bot, pool)._request_timeout == 15 < 30


async def mirror(
    pool: asyncpg.Pool, req: ReminderRequest, revision: int | None = None, **changes: Any
) -> None:
    """The plan's rows as the workflow last mirrored them (step 1 changed by `changes`);
    a `revision` past the send's makes it a write the send cannot overwrite."""
    update = {} if revision is None else {"revision": revision}
    state = req.state.model_copy(deep=True, update=update)
    for name, value in changes.items():
        setattr(state.steps[0], name, value)
    await ReminderRepository(pool).upsert_steps(state_rows(state))


@pytest.mark.parametrize("status", [StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.CANCELLED])
async def test_an_answered_step_is_not_reminded(
    pool: asyncpg.Pool, telegram: Any, bot: Bot, status: StepStatus
) -> None:
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key=f"k-{status}")
    await mirror(pool, req, status=status, reminder_count=0)
    result = await ActivityEnvironment().run(acts.send_reminder, req)
    assert result == ReminderResult(
        not_sent=NotSentReason.STEP_CLOSED, rows_revision=req.state.revision
    )
    assert telegram.sent(OWNER) == []
    rows = await ReminderRepository(pool).get_for_lead(req.state.lead_id)
    assert (rows[0].status.value, rows[0].reminder_count) == (status.value, 0)  # untouched
    assert await DeliveryLedger(pool).get(req.delivery_key) is None


async def test_a_plan_changed_since_the_send_was_decided_is_not_reminded(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """The owner paused (or snoozed) while the send waited for its due time: the rows
    carry a newer revision than the send's, so it sends nothing and says which."""
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="k-superseded")
    newer = req.state.model_copy(deep=True, update={"revision": req.state.revision + 2})
    await ReminderRepository(pool).upsert_steps(state_rows(newer))
    result = await ActivityEnvironment().run(acts.send_reminder, req)
    assert result == ReminderResult(
        not_sent=NotSentReason.SUPERSEDED, rows_revision=req.state.revision + 2
    )
    assert telegram.sent(OWNER) == []
    assert await DeliveryLedger(pool).get(req.delivery_key) is None


async def test_a_replaced_plan_is_not_reminded(pool: asyncpg.Pool, telegram: Any, bot: Bot) -> None:
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="k-old-version")
    await mirror(pool, req, status=StepStatus.PENDING)
    newer = req.state.model_copy(deep=True, update={"plan_version": 2})
    await ReminderRepository(pool).upsert_steps(state_rows(newer))
    result = await ActivityEnvironment().run(acts.send_reminder, req)
    assert result.not_sent == NotSentReason.STEP_CLOSED
    assert telegram.sent(OWNER) == []


@pytest.mark.parametrize("status", [LeadStatus.CLOSED_WON, LeadStatus.CLOSED_LOST])
async def test_a_closed_lead_is_not_reminded(
    pool: asyncpg.Pool, telegram: Any, bot: Bot, status: LeadStatus
) -> None:
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key=f"k-{status}")
    await mirror(pool, req, status=StepStatus.PENDING)
    await LeadRepository(pool).set_status(req.state.lead_id, OWNER, status)
    result = await ActivityEnvironment().run(acts.send_reminder, req)
    assert result.not_sent == NotSentReason.LEAD_CLOSED
    assert telegram.sent(OWNER) == []
    rows = await ReminderRepository(pool).get_for_lead(req.state.lead_id)
    assert rows[0].status.value == "pending" and rows[0].message_id is None


async def test_a_reminder_that_went_out_is_reported_even_if_answered_since(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """The workflow must learn that the owner was reminded, whatever happened after."""
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="k-sent-then-done")
    first = await ActivityEnvironment().run(acts.send_reminder, req)
    await mirror(pool, req, status=StepStatus.COMPLETED)
    again = await ActivityEnvironment().run(acts.send_reminder, req)
    assert again.not_sent is None and again.message_id == first.message_id


async def test_a_send_the_ledger_missed_is_carried_by_the_heartbeat(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """The database went away between the send and the ledger write: the next attempt gets
    the message id from the last heartbeat and records it instead of sending again."""
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="k-carried")
    await DeliveryLedger(pool).begin(req.delivery_key, OWNER, req.state.lead_id)
    env = ActivityEnvironment()
    sent_at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    env.info = dataclasses.replace(
        env.info,
        attempt=2,
        heartbeat_details=[
            {"key": req.delivery_key, "message_id": 4711, "sent_at": sent_at.isoformat()}
        ],
    )
    result = await env.run(acts.send_reminder, req)
    assert (result.message_id, result.sent_at) == (4711, sent_at)
    assert telegram.sent(OWNER) == []
    row = await DeliveryLedger(pool).get(req.delivery_key)
    assert row is not None and (row.status.value, row.message_id) == ("sent", 4711)
    rows = await ReminderRepository(pool).get_for_lead(req.state.lead_id)
    assert rows[0].message_id == 4711


async def test_one_chat_is_paced_and_others_are_not_delayed(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """Six reminders of one owner at once, with Telegram enforcing ~1 message/s per chat:
    no 429, spaced sends; another owner's reminder goes out at once."""
    telegram.set_flood_limit(per_chat_per_second=1)
    other = OWNER + 1
    telegram.add_user(other)
    acts = TelegramActivities(bot, pool)
    reqs = [await reminder(pool, key=f"k-burst-{n}") for n in range(6)]
    theirs = await reminder(pool, key="k-other")
    theirs.state.telegram_id = other
    runs = [asyncio.create_task(ActivityEnvironment().run(acts.send_reminder, r)) for r in reqs]
    await eventually(lambda: _ready(telegram.sent(OWNER)))
    await ActivityEnvironment().run(acts.send_reminder, theirs)
    await asyncio.gather(*runs)
    calls = telegram.calls("sendMessage")
    assert [c.status for c in calls if c.status != 200] == []
    assert len(telegram.sent(OWNER)) == 6 and len(telegram.sent(other)) == 1
    mine = [c.at for c in calls if c.chat_id == OWNER]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(mine)), mine
    # the other owner did not queue behind the burst
    assert [c.chat_id for c in calls].index(other) < 5


async def test_a_send_slow_to_reach_telegram_still_gets_its_spacing(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """A sender slowed between its claim and Telegram (a cold worker, a busy loop) holds
    its chat until Telegram answered: the next message to the chat comes a full spacing
    after it, not a spacing after the claim (a 429 in a worker-kill run)."""
    telegram.set_flood_limit(per_chat_per_second=1)
    telegram.delay_next("sendMessage", 2.0, chat_id=OWNER)
    acts = TelegramActivities(bot, pool)
    slow, next_one = [await reminder(pool, key=f"k-slow-{n}") for n in range(2)]
    first = asyncio.create_task(ActivityEnvironment().run(acts.send_reminder, slow))
    await eventually(lambda: _has_slot(pool, slow.delivery_key))
    await ActivityEnvironment().run(acts.send_reminder, next_one)
    await first
    calls = telegram.calls("sendMessage")
    assert [c.status for c in calls] == [200, 200]
    assert calls[1].at - calls[0].at >= 1.2, [c.at for c in calls]


async def test_the_bot_never_sends_more_than_its_limit_in_any_second(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """Six owners' reminders at once, the bot allowed 3 messages a second (Telegram's
    bot-wide limit, scaled down) and Telegram enforcing it: not one 429, and no second
    holds more than 3 of them."""
    telegram.set_flood_limit(per_second=3)
    acts = TelegramActivities(bot, pool, sends_per_second=3)
    reqs = await _one_each(pool, telegram, 6, OWNER + 100, "k-wide")
    await asyncio.gather(*(ActivityEnvironment().run(acts.send_reminder, r) for r in reqs))
    calls = telegram.calls("sendMessage")
    assert [c.status for c in calls] == [200] * 6
    times = sorted(c.at for c in calls)
    assert all(later - first >= 1.0 for first, later in zip(times, times[3:], strict=False))


async def test_a_reminder_woken_ahead_keeps_its_chat_from_a_notice_queued_meanwhile(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """The plan woke 2 s before the step was due; 1.3 s later a notice for the same owner
    comes up (another plan completed). The reminder took the chat's slot when it woke, so
    it still goes out at its due time and the notice a spacing after it; had the notice
    gone first, the chat's spacing would have made the reminder late."""
    acts = TelegramActivities(bot, pool)
    req = await reminder(pool, key="k-ahead")
    env, req.not_before = _woken_ahead(2.0)
    due = req.not_before.timestamp()
    sending = asyncio.create_task(env.run(acts.send_reminder, req))
    await asyncio.sleep(1.3)
    notice = NoticeRequest(state=req.state, kind=NoticeKind.PLAN_COMPLETED, delivery_key="n-ahead")
    await ActivityEnvironment().run(acts.send_notice, notice)
    await sending
    first, second = telegram.calls("sendMessage", ok=True)
    assert step_key_of(first) is not None and step_key_of(second) is None  # reminder, notice
    assert 0 <= first.at - due < 0.3, first.at - due
    assert second.at - first.at >= 1.2


def _woken_ahead(lead: float, priority: int | None = None) -> tuple[ActivityEnvironment, datetime]:
    """An attempt that starts now (as the server stamps it) for a send due `lead` s later."""
    env = _with_priority(priority)
    now = datetime.now(UTC)
    env.info = dataclasses.replace(env.info, started_time=now)
    return env, now + timedelta(seconds=lead)


def step_key_of(call: Any) -> Any:
    return reminder_step(call.params.get("reply_markup"))


async def test_at_the_bot_limit_a_reminder_takes_the_place_a_nudge_leaves_free(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """Five messages a second: four went out, one place is left. A nudge (a deferrable
    send: its plan queued it at priority 3) leaves that place to urgent sends and waits
    for the window to slide; a reminder (priority 1) asked for after it takes it at once."""
    telegram.set_flood_limit(per_second=5)
    acts = TelegramActivities(bot, pool, sends_per_second=5)
    reqs = await _one_each(pool, telegram, 6, OWNER + 200, "k-share")
    await asyncio.gather(*(ActivityEnvironment().run(acts.send_reminder, r) for r in reqs[:4]))
    urgent, later = _with_priority(1), _with_priority(3)
    reqs[4].kind = ReminderKind.NUDGE
    nudge = asyncio.create_task(later.run(acts.send_reminder, reqs[4]))
    await asyncio.sleep(0.2)
    await urgent.run(acts.send_reminder, reqs[5])
    await nudge
    calls = telegram.calls("sendMessage")
    assert [c.status for c in calls] == [200] * 6
    by_chat = {c.chat_id: c.at for c in calls}
    burst, first = by_chat[OWNER + 200], by_chat[OWNER + 205]
    assert first - burst < 1.0  # the reminder took the place kept for it
    assert by_chat[OWNER + 204] - burst >= 1.0  # the nudge waited for the window


async def test_a_nudge_waiting_for_the_bot_limit_lets_the_reminder_behind_it_go_first(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """Five messages a second, four out: a nudge waits for the window to slide. A
    reminder to the same owner takes the chat's next slot, 1.2 s later. When the window
    slides, the nudge is late for its slot and the reminder's is imminent: the nudge
    yields the chat (it never held it while waiting), so the reminder goes at its slot
    and the nudge a spacing after it, instead of the reminder waiting for the nudge."""
    telegram.set_flood_limit(per_second=5)
    acts = TelegramActivities(bot, pool, sends_per_second=5)
    reqs = await _one_each(pool, telegram, 4, OWNER + 300, "k-yield")
    await asyncio.gather(*(ActivityEnvironment().run(acts.send_reminder, r) for r in reqs))
    nudge_req, reminder_req = await _one_each(pool, telegram, 2, OWNER + 310, "k-yield-same")
    reminder_req.state.telegram_id = nudge_req.state.telegram_id
    nudge_req.kind = ReminderKind.NUDGE
    nudge = asyncio.create_task(_with_priority(3).run(acts.send_reminder, nudge_req))
    await asyncio.sleep(0.2)
    reminded = await _with_priority(1).run(acts.send_reminder, reminder_req)
    nudged = await nudge
    calls = telegram.calls("sendMessage")
    assert [c.status for c in calls] == [200] * 6
    at = {c.result["message_id"]: c.at for c in calls if c.chat_id == OWNER + 310}
    assert at[reminded.message_id] - calls[0].at < 1.6  # its slot, ~1.25 s: not ~2.2 s
    assert at[nudged.message_id] - at[reminded.message_id] >= 1.2  # the chat's spacing


async def test_nudges_to_one_owner_on_time_go_in_their_order(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """A nudge woken 1 s ahead takes the chat's slot for its due time; a second nudge to
    the same owner takes the next one, a spacing later. On time, the first is not close
    enough to the second's slot to yield it the chat: they go in their order."""
    acts = TelegramActivities(bot, pool)
    first, second = await _one_each(pool, telegram, 2, OWNER + 320, "k-order")
    second.state.telegram_id = first.state.telegram_id
    first.kind = second.kind = ReminderKind.NUDGE
    env, first.not_before = _woken_ahead(1.0, priority=3)
    early = asyncio.create_task(env.run(acts.send_reminder, first))
    await eventually(lambda: _has_slot(pool, first.delivery_key))
    later = await _with_priority(3).run(acts.send_reminder, second)
    sent = await early
    at = {c.result["message_id"]: c.at for c in telegram.calls("sendMessage", ok=True)}
    assert 0 <= at[sent.message_id] - first.not_before.timestamp() < 0.3
    assert 1.2 <= at[later.message_id] - at[sent.message_id] < 1.6


async def _one_each(
    pool: asyncpg.Pool, telegram: Any, count: int, first_owner: int, key: str
) -> list[ReminderRequest]:
    """A reminder each for `count` owners (chats) from `first_owner` on."""
    reqs = []
    for n in range(count):
        req = await reminder(pool, key=f"{key}-{n}")
        req.state.telegram_id = first_owner + n
        telegram.add_user(req.state.telegram_id)
        reqs.append(req)
    return reqs


def _with_priority(key: int | None) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, priority=Priority(priority_key=key))
    return env


async def test_a_slot_beyond_one_attempt_is_a_benign_retry_at_the_slot(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """An attempt waits for its chat's slot only as long as its timeout allows; further
    away it steps back with next_retry_delay, and the retry keeps its place."""
    acts = TelegramActivities(bot, pool, chat_spacing=5.0)
    reqs = [await reminder(pool, key=f"k-far-{n}") for n in range(3)]
    await ActivityEnvironment().run(acts.send_reminder, reqs[0])
    second = asyncio.create_task(ActivityEnvironment().run(acts.send_reminder, reqs[1]))
    await eventually(lambda: _has_slot(pool, reqs[1].delivery_key))
    with pytest.raises(ApplicationError) as err:
        await ActivityEnvironment().run(acts.send_reminder, reqs[2])  # slot ~10 s away
    assert err.value.type == "ChatPaced" and err.value.category == ApplicationErrorCategory.BENIGN
    assert err.value.next_retry_delay is not None
    await second
    await asyncio.sleep(err.value.next_retry_delay.total_seconds())
    await ActivityEnvironment().run(acts.send_reminder, reqs[2])
    times = [c.at for c in telegram.calls("sendMessage", ok=True)]
    assert len(times) == 3 and times[2] - times[1] >= 4.9, times


async def _has_slot(pool: asyncpg.Pool, key: str) -> bool:
    row = await DeliveryLedger(pool).get(key)
    return row is not None and row.slot_at is not None


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


def nudge(req: ReminderRequest, n: int = 2) -> ReminderRequest:
    """The next reminder of the same step and round."""
    state = req.state.model_copy(deep=True)
    state.steps[0].reminder_count = n
    key = req.delivery_key.rsplit(":", 1)[0] + f":n{n}"
    return ReminderRequest(state=state, step_id=1, kind=ReminderKind.NUDGE, delivery_key=key)


def step_messages(telegram: Any) -> list[Any]:
    return [m for m in telegram.sent(OWNER) if "Intro" in (m.text or "")]


async def test_a_nudge_takes_the_buttons_off_older_reminders(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """Only the newest reminder of a step invites a tap; each older one is edited once."""
    acts = TelegramActivities(bot, pool, chat_spacing=0.1)
    first = await reminder(pool, key="lead-x:v1:s1:r0:n1")
    second, third = nudge(first, 2), nudge(first, 3)
    for req in (first, second, third):
        await mirror(pool, req, status=StepStatus.SENT)
        await ActivityEnvironment().run(acts.send_reminder, req)
    assert [bool(m.buttons) for m in step_messages(telegram)] == [False, False, True]
    assert len(telegram.calls("editMessageReplyMarkup")) == 2  # the first one not twice
    await ActivityEnvironment().run(acts.send_reminder, third)  # a retry: nothing more
    assert len(telegram.calls("editMessageReplyMarkup")) == 2


async def test_edits_telegram_refuses_are_tolerated_or_left_for_later(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """A message that is gone (400) is given up; a 429 on the edit does not fail the
    reminder, and the next reminder of the step clears what was left."""
    acts = TelegramActivities(bot, pool, chat_spacing=0.1)
    first = await reminder(pool, key="lead-y:v1:s1:r0:n1")
    await ActivityEnvironment().run(acts.send_reminder, first)
    telegram.fail_next("editMessageReplyMarkup", 429, retry_after=30)
    second = nudge(first, 2)
    result = await ActivityEnvironment().run(acts.send_reminder, second)
    assert result.message_id is not None
    assert [bool(m.buttons) for m in step_messages(telegram)] == [True, True]
    telegram.fail_next("editMessageReplyMarkup", 400, "Bad Request: message to edit not found")
    await ActivityEnvironment().run(acts.send_reminder, nudge(first, 3))
    assert [bool(m.buttons) for m in step_messages(telegram)] == [True, False, True]
    row = await DeliveryLedger(pool).get(first.delivery_key)
    assert row is not None  # given up for good: a later reminder does not try it again
    await ActivityEnvironment().run(acts.send_reminder, nudge(first, 4))
    edited = {c.params["message_id"] for c in telegram.calls("editMessageReplyMarkup", ok=True)}
    assert step_messages(telegram)[0].message_id not in edited


async def test_a_reminder_answered_while_it_was_sent_loses_its_buttons(
    pool: asyncpg.Pool, telegram: Any, bot: Bot
) -> None:
    """The owner answered (Mini App) while Telegram was delivering the nudge: it went out
    and is reported sent, but neither it nor the first reminder keeps buttons."""
    acts = TelegramActivities(bot, pool)
    first = await reminder(pool, key="lead-z:v1:s1:r0:n1")
    await ActivityEnvironment().run(acts.send_reminder, first)
    telegram.delay_next("sendMessage", 1.5, after_processing=True)
    run = asyncio.create_task(ActivityEnvironment().run(acts.send_reminder, nudge(first)))
    await eventually(lambda: _ready(len(step_messages(telegram)) == 2 or None))
    await mirror(pool, first, revision=99, status=StepStatus.COMPLETED)  # newer than the send
    result = await run
    assert result.message_id == step_messages(telegram)[1].message_id
    assert [bool(m.buttons) for m in step_messages(telegram)] == [False, False]


async def test_a_bot_builds_each_response_model_once(telegram: Any) -> None:
    """aiogram asks pydantic for `Response[Message]` on every call and pydantic keeps it
    only weakly: without `KeepResponseModels` a garbage collection between two messages
    made the second one build the model, schema and all, again."""
    telegram.add_user(4243)
    b = make_bot(telegram.token, telegram.base_url)
    try:
        await b.send_message(4243, "one")
        model = weakref.ref(Response[Message])
        gc.collect()
        assert model() is not None  # still the one pydantic hands out
    finally:
        await b.session.close()
