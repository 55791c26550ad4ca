"""`leadpilot doctor`: does the mirror agree with the workflows?

The workflows are the truth and scheduled_reminders is their mirror. The doctor finds
where the two disagree:

- **orphaned rows**: rows still pending/sent although no workflow will ever write them
  again — the lead's workflow is closed (terminated, cancelled, timed out, failed, or
  completed without its last write), missing, or running a newer plan version. With
  `--repair` they are closed as `cancelled` in one statement per lead and the lead's log
  says why. Their revision is kept, so a workflow an operator resets still wins.
- **mismatches**: a running plan whose rows differ from its `state` query, or whose
  `PlanStatus` search attribute differs from its state. The workflow owns its rows, so
  `--repair` only asks it (the `remirror` signal) to write its whole plan again.
- **unanswered**: a running plan whose `state` query fails (no worker, a failing task).

A mismatch is confirmed by a second look after a short pause, so a write in flight is
not reported. Exit status 0 when everything agrees, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from storage.activity_log import ActivityLogRepository
from storage.models import Reminder
from workflows import search_attributes as sa
from workflows.models import PlanState

QUERY_TIMEOUT = timedelta(seconds=5)
RECHECK_AFTER = 2.0
_OPEN = ("pending", "sent")


@dataclass
class PlanFinding:
    lead_id: int
    workflow: str  # the workflow's status, "Running", or "missing"
    orphaned: list[Reminder] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    repaired: int = 0
    remirrored: bool = False

    @property
    def ok(self) -> bool:
        return not self.orphaned and not self.differences

    def lines(self) -> list[str]:
        head = f"lead {self.lead_id} (workflow lead-{self.lead_id}: {self.workflow})"
        out: list[str] = []
        if self.orphaned:
            steps = ", ".join(
                f"v{r.plan_version} step {r.step_id} {r.status}" for r in self.orphaned
            )
            done = f"; closed {self.repaired} as cancelled" if self.repaired else ""
            out.append(f"{head}: {len(self.orphaned)} orphaned open row(s): {steps}{done}")
        asked = "; asked the workflow to re-mirror" if self.remirrored else ""
        out += [f"{head}: {d}{asked}" for d in self.differences]
        return out


@dataclass
class Report:
    checked: int = 0
    findings: list[PlanFinding] = field(default_factory=list)

    @property
    def problems(self) -> list[PlanFinding]:
        return [f for f in self.findings if not f.ok]

    def render(self) -> str:
        lines = [line for f in self.problems for line in f.lines()]
        orphaned = sum(1 for f in self.problems if f.orphaned)
        repaired = sum(f.repaired for f in self.findings)
        summary = (
            f"checked {self.checked} plan(s): {self.checked - len(self.problems)} agree, "
            f"{orphaned} with orphaned rows, "
            f"{sum(1 for f in self.problems if f.differences)} with differences"
        )
        if repaired:
            summary += f"; {repaired} orphaned row(s) closed"
        return "\n".join([*lines, summary])


async def diagnose(client: Client, pool: asyncpg.Pool, *, repair: bool = False) -> Report:
    """Check every lead that has open rows or a running plan workflow."""
    open_leads = {
        r["lead_id"]
        for r in await pool.fetch(
            "SELECT DISTINCT lead_id FROM scheduled_reminders WHERE status = ANY($1::text[])",
            list(_OPEN),
        )
    }
    running: set[int] = set()
    async for wf in client.list_workflows(
        "WorkflowType = 'EngagementPlanWorkflow' AND ExecutionStatus = 'Running'"
    ):
        if wf.id.startswith("lead-") and wf.id[5:].isdigit():
            running.add(int(wf.id[5:]))
    known = {
        r["id"]
        for r in await pool.fetch(
            "SELECT id FROM lead_registry WHERE id = ANY($1::bigint[])", sorted(running)
        )
    }
    leads = sorted(open_leads | (running & known))  # a workflow of another database is not ours
    limit = asyncio.Semaphore(8)

    async def check(lead_id: int) -> PlanFinding:
        async with limit:
            return await _check_lead(client, pool, lead_id, repair)

    return Report(len(leads), list(await asyncio.gather(*(check(lead) for lead in leads))))


async def _open_rows(pool: asyncpg.Pool, lead_id: int) -> list[Reminder]:
    rows = await pool.fetch(
        """
        SELECT * FROM scheduled_reminders WHERE lead_id = $1 AND status = ANY($2::text[])
        ORDER BY plan_version, step_id
        """,
        lead_id,
        list(_OPEN),
    )
    return [Reminder.from_record(r) for r in rows]


async def _check_lead(
    client: Client, pool: asyncpg.Pool, lead_id: int, repair: bool
) -> PlanFinding:
    handle = client.get_workflow_handle(f"lead-{lead_id}")
    try:
        desc = await handle.describe()
        status = desc.status
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        status = None
    finding = PlanFinding(lead_id, status.name.title() if status else "missing")
    if status != WorkflowExecutionStatus.RUNNING:
        finding.orphaned = await _open_rows(pool, lead_id)
    else:
        first = await _compare(
            handle, pool, lead_id, desc.typed_search_attributes.get(sa.PLAN_STATUS)
        )
        if first is not None and (first[0] or first[1]):
            await asyncio.sleep(RECHECK_AFTER)  # a write may have been in flight
            desc = await handle.describe()
            first = await _compare(
                handle, pool, lead_id, desc.typed_search_attributes.get(sa.PLAN_STATUS)
            )
        if first is None:
            finding.differences.append("state query not answered (no worker, or its task fails)")
        else:
            finding.orphaned, finding.differences = first
    if repair and finding.orphaned:
        finding.repaired = await _close_orphans(pool, lead_id, finding)
    if repair and finding.differences and status == WorkflowExecutionStatus.RUNNING:
        await handle.signal("remirror")
        finding.remirrored = True
    return finding


async def _compare(
    handle: WorkflowHandle[Any, Any], pool: asyncpg.Pool, lead_id: int, plan_status: str | None
) -> tuple[list[Reminder], list[str]] | None:
    """Orphaned rows of older plan versions, and how the current rows differ from state."""
    try:
        state: PlanState = await handle.query(
            "state", result_type=PlanState, rpc_timeout=QUERY_TIMEOUT
        )
    except Exception:  # a failed query is reported, never fatal for the run
        return None
    rows = [
        Reminder.from_record(r)
        for r in await pool.fetch(
            "SELECT * FROM scheduled_reminders WHERE lead_id = $1 ORDER BY plan_version, step_id",
            lead_id,
        )
    ]
    orphaned = [r for r in rows if r.plan_version < state.plan_version and r.is_open]
    current = {r.step_id: r for r in rows if r.plan_version == state.plan_version}
    diffs: list[str] = []
    if plan_status is not None and plan_status != state.status.value:
        diffs.append(f"PlanStatus search attribute {plan_status!r} != state {state.status.value!r}")
    for step in state.steps:
        row = current.pop(step.step_id, None)
        if row is None:
            diffs.append(f"v{state.plan_version} step {step.step_id}: no row (state {step.status})")
            continue
        for name in (
            "status",
            "due_at",
            "reminder_count",
            "snooze_count",
            "last_reminded_at",
            "completed_at",
        ):
            want, got = getattr(step, name), getattr(row, name)
            if name == "status":
                want, got = want.value, got.value
            if want != got:
                diffs.append(
                    f"v{state.plan_version} step {step.step_id}: {name} row {got} != state {want}"
                )
    for row in current.values():
        if row.is_open:
            orphaned.append(row)
    return orphaned, diffs


async def _close_orphans(pool: asyncpg.Pool, lead_id: int, finding: PlanFinding) -> int:
    """Close exactly the rows found open (by id), only if they are still open."""
    ids = [r.id for r in finding.orphaned]
    async with pool.acquire() as conn, conn.transaction():
        closed = await conn.fetch(
            """
            UPDATE scheduled_reminders SET status = 'cancelled'
            WHERE id = ANY($1::bigint[]) AND status = ANY($2::text[])
            RETURNING telegram_id, plan_version
            """,
            ids,
            list(_OPEN),
        )
        if closed:
            versions = sorted({r["plan_version"] for r in closed})
            await ActivityLogRepository(conn).add(
                lead_id,
                closed[0]["telegram_id"],
                "plan_cancelled",
                f"leadpilot doctor closed {len(closed)} open step(s) of plan "
                f"v{', v'.join(map(str, versions))}: workflow {finding.workflow}",
                metadata={"by": "doctor", "workflow": finding.workflow},
                dedupe_key=f"doctor:lead-{lead_id}:{','.join(str(i) for i in sorted(ids))}",
            )
    return len(closed)


class DoctorSettings(BaseSettings):
    """Only what the doctor needs (no bot token)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: SecretStr  # may carry a password: never in a repr or log
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"


async def run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="leadpilot doctor", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--repair",
        action="store_true",
        help="close orphaned open rows; ask running plans that differ to re-mirror",
    )
    args = parser.parse_args(argv)
    try:
        settings = DoctorSettings()  # type: ignore[call-arg]
    except Exception:
        print("leadpilot doctor: missing required setting DATABASE_URL", file=sys.stderr)
        return 2
    from storage.db import create_pool
    from temporal_client import connect

    client = await connect(settings.temporal_address, settings.temporal_namespace)
    pool = await create_pool(settings.database_url.get_secret_value(), min_size=1, max_size=4)
    try:
        report = await diagnose(client, pool, repair=args.repair)
    finally:
        await pool.close()
    print(report.render())
    unresolved = [
        f
        for f in report.problems
        if (f.differences and not f.remirrored) or len(f.orphaned) > f.repaired
    ]
    return 1 if unresolved else 0


def main(argv: Sequence[str]) -> int:
    return asyncio.run(run(argv))
