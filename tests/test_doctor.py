"""`leadpilot doctor` on the real dev server: finds rows left open by a terminated plan
and a running plan whose rows disagree with its state, and closes the orphaned rows."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from temporalio.testing import WorkflowEnvironment

from ops.doctor import diagnose
from storage.activity_log import ActivityLogRepository
from tests.rig import ANYTIME, eventually, plan_rig
from workflows.models import StepStatus

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("distinct_lead_ids")]

LEADPILOT = Path(sys.prefix) / "bin" / "leadpilot"


async def doctor(env: WorkflowEnvironment, db_url: str, *args: str) -> tuple[int, str]:
    """The real command, as an operator runs it."""
    proc = await asyncio.create_subprocess_exec(
        str(LEADPILOT), "doctor", *args,
        env={
            **os.environ,
            "DATABASE_URL": db_url,
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        },
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_doctor_finds_and_repairs(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(dev_env.client, db_url, pool, telegram) as rig:
        handles = {}
        for name in ("healthy", "terminated", "drifted"):
            lead = await rig.new_lead(name=name)
            handles[name] = (lead, await rig.start(lead, approved=True, schedule=ANYTIME))
        for _, handle in handles.values():
            await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        healthy, _ = handles["healthy"]
        terminated, dead = handles["terminated"]
        drifted, _ = handles["drifted"]
        await dead.terminate("operator pressed Terminate")
        # A mirror write that never landed: the row still says no reminder went out.
        await pool.execute(
            "UPDATE scheduled_reminders SET reminder_count = 0 WHERE lead_id = $1 AND step_id = 1",
            drifted,
        )

        report = await diagnose(dev_env.client, pool)
        by_lead = {f.lead_id: f for f in report.findings}
        assert by_lead[healthy].ok
        assert by_lead[terminated].workflow == "Terminated"
        assert [(r.step_id, r.status.value) for r in by_lead[terminated].orphaned] == [
            (1, "sent"), (2, "pending"), (3, "pending"), (4, "pending"), (5, "pending"),
            (6, "pending"),
        ]  # fmt: skip
        assert by_lead[drifted].differences == ["v1 step 1: reminder_count row 0 != state 1"]

        code, out = await doctor(dev_env, db_url)
        assert code == 1
        assert f"lead-{terminated}: Terminated): 6 orphaned open row(s)" in out
        assert f"lead-{drifted}: Running): v1 step 1: reminder_count row 0 != state 1" in out
        assert "checked 3 plan(s): 1 agree, 1 with orphaned rows, 1 with differences" in out

        code, out = await doctor(dev_env, db_url, "--repair")
        assert "closed 6 as cancelled" in out
        assert "reminder_count row 0 != state 1; asked the workflow to re-mirror" in out
        assert code == 0, out
        statuses = await pool.fetch(
            "SELECT DISTINCT status FROM scheduled_reminders WHERE lead_id = $1", terminated
        )
        assert [r["status"] for r in statuses] == ["cancelled"]
        log = await ActivityLogRepository(pool).for_lead(terminated)
        assert any(
            e.activity_type == "plan_cancelled" and "doctor" in (e.content or "") for e in log
        )

        # The drifted plan rewrote its rows when asked.
        row = await eventually(
            lambda: pool.fetchval(
                "SELECT reminder_count FROM scheduled_reminders WHERE lead_id = $1 AND step_id = 1",
                drifted,
            )
        )
        assert row == 1
        code, out = await doctor(dev_env, db_url)
        assert code == 0, out
        assert "checked 2 plan(s): 2 agree" in out
