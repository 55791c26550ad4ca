"""Per-chat pacing end to end (SPEC §4, issue 8): many reminders of one owner falling due
together reach Telegram at most ~1/s for that chat, with no 429, while another owner's
reminder is not queued behind them. Real dev server, workers, PostgreSQL, emulator."""

from __future__ import annotations

import itertools
from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.rig import ANYTIME, OWNER, plan_rig
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.models import StepStatus

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("distinct_lead_ids")]


async def test_forty_reminders_of_one_owner_due_at_once(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    telegram.set_flood_limit(per_chat_per_second=1)  # Telegram's per-chat limit, enforced
    other = OWNER + 500
    async with plan_rig(dev_env.client, db_url, pool, telegram) as rig:
        handles = []
        for n in range(40):
            lead = await rig.new_lead(name=f"Lead {n}")
            handles.append(await rig.start(lead, approved=True, schedule=ANYTIME))
        their_lead = await rig.new_lead(owner=other)
        theirs = await rig.start(their_lead, owner=other, approved=True, schedule=ANYTIME)
        await rig.wait_state(theirs, lambda s: s.steps[0].status == StepStatus.SENT, timeout=60)
        for handle in handles:
            state = await rig.wait_state(
                handle, lambda s: s.steps[0].status == StepStatus.SENT, timeout=180
            )
            await rig.assert_mirror_matches(state)
        for handle in [*handles, theirs]:
            await handle.signal(EngagementPlanWorkflow.cancel)

    calls = telegram.calls("sendMessage")
    assert [c.status for c in calls if c.status != 200] == []  # not one 429
    mine = [c.at for c in calls if c.chat_id == OWNER]
    assert len(mine) == 40 and len(telegram.sent(other)) == 1
    gaps = [b - a for a, b in itertools.pairwise(mine)]
    assert min(gaps) >= 1.0, gaps
    # The other owner's reminder went out while the burst was still being paced.
    their_at = next(c.at for c in calls if c.chat_id == other)
    assert their_at < mine[10]
