"""What an operator does, on the real Temporal dev server with the real `temporal` CLI:
list plans by status, query one, cancel one with a bare signal."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from storage.activity_log import ActivityLogRepository
from storage.reminders import ReminderRepository
from tests.conftest import TEMPORAL_CLI
from tests.rig import ANYTIME, OWNER, eventually, plan_rig
from workflows import search_attributes as sa
from workflows.engagement_plan import EngagementPlanWorkflow
from workflows.models import PauseRequest, PlanStatus, StepAction, StepStatus

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("distinct_lead_ids")]


async def cli(env: WorkflowEnvironment, *args: str) -> Any:
    """Run the `temporal` CLI against the dev server; JSON output parsed."""
    address = env.client.service_client.config.target_host
    proc = await asyncio.create_subprocess_exec(
        str(TEMPORAL_CLI), *args, "--address", address, "-o", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    text = out.decode().strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:  # newline-delimited JSON
        return [json.loads(line) for line in text.splitlines() if line.strip()]


async def listed(env: WorkflowEnvironment, query: str) -> list[str]:
    rows = await cli(env, "workflow", "list", "--query", query)
    rows = rows if isinstance(rows, list) else [rows] if rows else []
    return [r["execution"]["workflowId"] for r in rows]


async def test_operator_lists_queries_and_cancels_a_plan(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    async with plan_rig(dev_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        wid = f"lead-{lead}"

        # Listed by status and by owner, and as overdue-or-due-soon by NextDueAt.
        await eventually(lambda: _contains(dev_env, "PlanStatus='active'", wid))
        await eventually(lambda: _contains(dev_env, f"TelegramId={OWNER} AND LeadId={lead}", wid))
        await eventually(
            lambda: _contains(
                dev_env, "PlanStatus='active' AND NextDueAt < '2100-01-01T00:00:00Z'", wid
            )
        )

        desc = await handle.describe()
        assert desc.typed_search_attributes.get(sa.PLAN_STATUS) == "active"
        assert await desc.static_summary() == f"Engagement plan for lead {lead}"
        details = await cli(dev_env, "workflow", "metadata", "--workflow-id", wid)
        assert "nudge 2" in json.dumps(details)  # current details say what it waits for

        state = await cli(dev_env, "workflow", "query", "--workflow-id", wid, "--name", "state")
        assert state["queryResult"][0]["status"] == "active"

        # Paused plans drop NextDueAt and show as paused.
        await handle.execute_update(EngagementPlanWorkflow.pause, PauseRequest())
        await eventually(lambda: _contains(dev_env, "PlanStatus='paused'", wid))
        paused = await handle.describe()
        assert paused.typed_search_attributes.get(sa.NEXT_DUE_AT) is None
        await cli(
            dev_env, "workflow", "update", "execute", "--workflow-id", wid, "--name", "resume"
        )
        await eventually(lambda: _contains(dev_env, "PlanStatus='active'", wid))

        # A bare CLI signal cancels: rows cancelled, workflow completes normally.
        await cli(dev_env, "workflow", "signal", "--workflow-id", wid, "--name", "cancel")
        summary = await handle.result()
        assert summary.status == PlanStatus.CANCELLED
        rows = await ReminderRepository(pool).get_for_lead(lead)
        assert {r.status.value for r in rows} == {"cancelled"}
        log = [e.activity_type for e in await ActivityLogRepository(pool).for_lead(lead)]
        assert log.count("plan_cancelled") == 1
        await eventually(lambda: _contains(dev_env, "PlanStatus='cancelled'", wid))


async def _contains(env: WorkflowEnvironment, query: str, wid: str) -> bool:
    return wid in await listed(env, query)


async def test_worker_exports_prometheus_metrics(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """SDK runtime metrics and ours on one endpoint: sends, errors by kind, lateness, plans."""
    import socket

    import aiohttp

    from temporal_client import connect
    from worker import metrics_runtime, report_plan_counts

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runtime = metrics_runtime(port)
    client = await connect(dev_env.client.service_client.config.target_host, runtime=runtime)
    async with plan_rig(client, db_url, pool, telegram) as rig:
        telegram.fail_next("sendMessage", 502)
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME)
        await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        counting = asyncio.create_task(report_plan_counts(client, runtime, every=0.2))

        async def scrape() -> str | None:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/metrics") as r,
            ):
                text = await r.text()
            wanted = ("leadpilot_plans{", "leadpilot_reminders_sent{", "leadpilot_send_errors{")
            return text if all(w in text for w in wanted) else None

        page = await eventually(scrape)
        counting.cancel()
        await handle.signal(EngagementPlanWorkflow.cancel)
    lines = page.splitlines()
    assert any(
        line.startswith("leadpilot_reminders_sent{")
        and 'kind="first"' in line
        and line.endswith(" 1")
        for line in lines
    )
    assert any(
        line.startswith("leadpilot_send_errors{") and 'kind="server"' in line for line in lines
    )
    assert any(line.startswith("leadpilot_reminder_lateness_bucket{") for line in lines)
    assert any(
        line.startswith("leadpilot_plans{")
        and 'status="active"' in line
        and float(line.split()[-1]) >= 1
        for line in lines
    )
    assert any(line.startswith("temporal_") for line in lines)  # the SDK's own


async def test_telegram_queue_is_rate_limited_by_the_server(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """Thirty plans due at once: sends spread at the configured rate, none lost."""
    async with plan_rig(dev_env.client, db_url, pool, telegram, telegram_sends_per_second=5) as rig:
        handles = []
        for n in range(30):
            lead = await rig.new_lead(owner=OWNER + n)
            handles.append(await rig.start(lead, owner=OWNER + n, approved=True, schedule=ANYTIME))
        for handle in handles:
            await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT, timeout=30)
            await handle.signal(EngagementPlanWorkflow.cancel)
    assert len(telegram.calls("sendMessage", ok=True)) == 30
    # The server's token bucket lets an initial burst through (bigger if earlier workers on
    # this server set a higher rate); after it the sends follow the setting. Unlimited,
    # fifteen sends take a fraction of a second; at 5/s they take about three.
    times = [c.at for c in telegram.calls("sendMessage", ok=True)]
    assert times[-1] - times[15] >= 2.0, [round(t - times[0], 2) for t in times]


async def open_timer(handle: WorkflowHandle[Any, Any], until: datetime) -> HistoryEvent | None:
    """The workflow's running timer that fires at ``until``, once it is started."""
    events = (await handle.fetch_history()).events
    ended = {
        attrs.started_event_id
        for e in events
        for attrs in (e.timer_fired_event_attributes, e.timer_canceled_event_attributes)
        if attrs.started_event_id
    }
    for e in reversed(events):
        if e.HasField("timer_started_event_attributes") and e.event_id not in ended:
            fires = (
                e.event_time.ToDatetime(UTC)
                + e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            )
            # The event is written when the workflow task completes, a moment after the
            # workflow read its clock: so this reading is at, or shortly after, `until`.
            if timedelta(seconds=-1) < fires - until < timedelta(seconds=30):
                return e
    return None


async def timer_fired(
    handle: WorkflowHandle[Any, Any], started: HistoryEvent
) -> HistoryEvent | None:
    """The TimerFired event of the timer ``started`` began, once the server wrote it."""
    for e in (await handle.fetch_history()).events:
        if (
            e.HasField("timer_fired_event_attributes")
            and e.timer_fired_event_attributes.started_event_id == started.event_id
        ):
            return e
    return None


async def test_a_reminder_due_while_no_worker_runs_goes_out_once_one_is_back(
    dev_env: WorkflowEnvironment, db_url: str, pool: asyncpg.Pool, telegram: Any
) -> None:
    """Workers can be down (a deploy, a crash): the due reminder waits in Temporal and goes
    out exactly once when a worker is back. Real time: a plan day is 2 s here."""
    async with plan_rig(dev_env.client, db_url, pool, telegram) as rig:
        lead = await rig.new_lead()
        handle = await rig.start(lead, approved=True, schedule=ANYTIME, day_seconds=2)
        state = await rig.wait_state(handle, lambda s: s.steps[0].status == StepStatus.SENT)
        state = await handle.execute_update(
            EngagementPlanWorkflow.complete_step, StepAction(step_id=1, plan_version=1)
        )
        due = state.steps[1].due_at  # 2 plan days = 4 s from now
        assert due is not None
        # The plan sleeps until step 2 is due; then the workers go away.
        timer = await eventually(lambda: open_timer(handle, until=due))
        await rig.stop_workers()
        # Temporal fires the timer at the due time; no worker is there to act on it.
        fired = await eventually(lambda: timer_fired(handle, timer), timeout=30)
        assert fired.event_time.ToDatetime(UTC) >= due
        assert len(telegram.sent(OWNER)) == 1  # due, but nobody to send it
        rig.start_workers()
        state = await rig.wait_state(handle, lambda s: s.steps[1].status == StepStatus.SENT)
        assert len(telegram.sent(OWNER)) == 2
        await rig.assert_mirror_matches(state)
