"""Forged button data with ids beyond their columns (issue 8, finding 6): every tap is
answered by the real dispatcher ("This button is no longer valid"), nothing reaches
asyncpg as an out-of-range number, and nothing changes."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.bot_fixtures import bot_stack

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("distinct_lead_ids")]

ALICE = 3003
BEYOND_INT64 = str(2**63)
BEYOND_INT32 = str(2**31)

FORGED = [
    f"st:d:{BEYOND_INT64}:1:1",  # Done on a reminder
    f"st:s1:1:{BEYOND_INT32}:1",  # Snooze, plan version beyond int
    f"st:k:1:1:{BEYOND_INT32}",  # Skip, step id beyond int
    f"pl:go:{BEYOND_INT64}:1",  # Start plan
    f"ld:o:{BEYOND_INT64}",  # open lead detail
    f"ls:{BEYOND_INT64}:closed_won",  # change lead status
    "lp:99999999999999999999999",  # a page of the lead list
    "st:d:-5:1:1",  # negative id
]


@pytest.mark.parametrize("data", FORGED)
async def test_out_of_range_ids_in_callbacks_are_answered(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any, data: str
) -> None:
    async with bot_stack(dev_env, db_url, pool, telegram, day_seconds=60) as stack:
        hello = await stack.say(ALICE, "/start", "")
        answer = await telegram.wait_answered(telegram.press(ALICE, hello.message_id, data))
        assert answer.text == "This button is no longer valid."
        assert await pool.fetchval("SELECT count(*) FROM lead_registry") == 0
