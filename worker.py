"""The Temporal worker process: plan workflows on `engagement`, Telegram sends on `telegram`."""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

import asyncpg
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import (
    Interceptor,
    PollerBehaviorSimpleMaximum,
    UnsandboxedWorkflowRunner,
    Worker,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.metrics import LATENESS_BUCKETS
from activities.mirror import MirrorActivities
from activities.planning import LeadBrief, PlanningActivities, make_openai_client
from logging_setup import setup_logging
from ops.outages import OutageInterceptor, OutageTracker, install_log_filter
from settings import Settings, load_settings, revealed
from storage.db import create_pool
from storage.leads import LeadRepository
from temporal_client import connect
from workflows.engagement_plan import (
    ENGAGEMENT_TASK_QUEUE,
    TELEGRAM_TASK_QUEUE,
    EngagementPlanWorkflow,
)
from workflows.models import TERMINAL_PLAN_STATUSES, PlanStatus
from workflows.sandbox import RESTRICTIONS, workflow_runner

if TYPE_CHECKING:  # aiogram is loaded after the worker polls (see running_workers)
    from aiogram import Bot

log = logging.getLogger("leadpilot.worker")


def create_workers(
    client: Client,
    pool: asyncpg.Pool,
    bot: Bot,
    settings: Settings,
) -> list[Worker]:
    """Both workers of one process; tests build them the same way as production."""
    interceptors = outage_interceptors()
    return [
        engagement_worker(client, pool, settings, interceptors),
        telegram_worker(client, pool, bot, settings, interceptors),
    ]


def outage_interceptors() -> list[Interceptor]:
    """One warning per outage of PostgreSQL/Telegram/the planner, not a traceback per retry."""
    install_log_filter()
    return [OutageInterceptor(OutageTracker())]


def engagement_worker(
    client: Client, pool: asyncpg.Pool, settings: Settings, interceptors: list[Interceptor]
) -> Worker:
    """Plan workflows, plan generation and mirror writes."""

    async def load_lead(lead_id: int) -> LeadBrief | None:
        lead = await LeadRepository(pool).get(lead_id)
        return None if lead is None else LeadBrief.model_validate(lead)

    planning = PlanningActivities(
        load_lead,
        # Built on the first draft: importing openai costs seconds of start-up.
        lambda: make_openai_client(
            revealed(settings.openai_api_key),
            settings.openai_base_url,
            timeout=settings.planner_request_timeout_seconds,
        ),
        settings.openai_model,
        deadline=settings.planner_deadline_seconds,
        request_timeout=settings.planner_request_timeout_seconds,
    )
    mirror = MirrorActivities(pool)
    return Worker(
        client,
        task_queue=ENGAGEMENT_TASK_QUEUE,
        workflows=[EngagementPlanWorkflow],
        workflow_runner=plan_runner(settings),
        activities=[planning.generate_plan, mirror.sync_plan],
        interceptors=interceptors,
        max_cached_workflows=settings.max_cached_workflows,
        max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_local_activities=settings.max_concurrent_local_activities,
        workflow_task_poller_behavior=PollerBehaviorSimpleMaximum(settings.workflow_task_pollers),
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(settings.activity_task_pollers),
    )


def plan_runner(settings: Settings) -> WorkflowRunner:
    """The workflow runner of `WORKFLOW_SANDBOX` (see settings.py).

    "full" re-imports workflows/engagement_plan.py into a fresh sandbox for every plan
    the worker loads (a new plan, a cache miss): ~45 ms of CPU each, the largest cost of
    enrolment and of waking a sleeping plan (BENCHMARKS.md). "shared" passes that module
    through; "off" runs plans without the sandbox. The replayer of tests/test_histories.py
    and test_engagement_plan.py keeps the full sandbox, so workflow code is still checked
    for non-deterministic calls there.
    """
    if settings.workflow_sandbox == "off":
        return UnsandboxedWorkflowRunner()
    if settings.workflow_sandbox == "shared":
        return SandboxedWorkflowRunner(
            restrictions=RESTRICTIONS.with_passthrough_modules(EngagementPlanWorkflow.__module__)
        )
    return workflow_runner()


def telegram_worker(
    client: Client,
    pool: asyncpg.Pool,
    bot: Bot,
    settings: Settings,
    interceptors: list[Interceptor],
) -> Worker:
    """Telegram sends, on their own queue so the server's rate limit covers only them."""
    from activities.telegram import TelegramActivities

    telegram = TelegramActivities(
        bot,
        pool,
        request_timeout=settings.telegram_request_timeout,
        chat_spacing=settings.chat_spacing_seconds,
        sends_per_second=settings.telegram_sends_per_second,
    )
    return Worker(
        client,
        task_queue=TELEGRAM_TASK_QUEUE,
        activities=[telegram.send_reminder, telegram.send_notice],
        interceptors=interceptors,
        # Heartbeats reach the server every 3 s (not 0.8 × the 10-s heartbeat timeout),
        # so a busy event loop does not make a live send look dead.
        max_heartbeat_throttle_interval=timedelta(seconds=3),
        # Enforced by the server, so it holds across any number of workers.
        max_task_queue_activities_per_second=settings.telegram_sends_per_second,
        max_concurrent_activities=settings.max_concurrent_sends,
        activity_task_poller_behavior=PollerBehaviorSimpleMaximum(settings.activity_task_pollers),
    )


def metrics_runtime(port: int) -> Runtime:
    """SDK runtime metrics and ours (activities/metrics.py) on one Prometheus endpoint."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"0.0.0.0:{port}",
                durations_as_seconds=True,
                histogram_bucket_overrides={"leadpilot_reminder_lateness": LATENESS_BUCKETS},
            )
        )
    )


async def report_plan_counts(client: Client, runtime: Runtime, every: float = 30.0) -> None:
    """Gauge `leadpilot_plans{status=…}` from Temporal visibility (the plans' own truth)."""
    gauge = runtime.metric_meter.create_gauge("leadpilot_plans", "Plan workflows by PlanStatus")
    while True:
        for status in PlanStatus:
            try:
                query = f"PlanStatus='{status.value}'"
                if status not in TERMINAL_PLAN_STATUSES:  # a terminated run keeps its last status
                    query += " AND ExecutionStatus='Running'"
                found = await client.count_workflows(query)
            except RPCError as err:
                log.warning("cannot count %s plans: %s", status.value, err)
                continue
            gauge.set(found.count, {"status": status.value})
        await asyncio.sleep(every)


@asynccontextmanager
async def running_workers(settings: Settings) -> AsyncIterator[None]:
    """Load the heavy clients while connecting, then poll the queues of `WORKER_QUEUES`.

    aiogram builds some 450 pydantic models on import (most of the start-up; only the
    telegram queue needs it), openai a few hundred more (only the engagement queue, only
    when configured). They are imported in a thread while the Temporal and PostgreSQL
    connections open, and finished before any workflow task runs: a CPU-heavy import
    next to a workflow activation can starve it past the SDK's 2-s deadlock detection.
    A process with WORKER_QUEUES=engagement skips aiogram and polls within a second or two.
    """
    began = time.monotonic()
    queues: set[str] = set(settings.worker_queues)
    loading = asyncio.create_task(asyncio.to_thread(_import_clients, settings, queues))
    runtime = metrics_runtime(settings.metrics_port) if settings.metrics_port else None
    client = await connect(settings.temporal_address, settings.temporal_namespace, runtime)
    pool = await create_pool(
        settings.database_url.get_secret_value(), max_size=settings.worker_db_pool_size
    )
    await loading
    interceptors = outage_interceptors()
    workers = []
    bot: Bot | None = None
    if ENGAGEMENT_TASK_QUEUE in queues:
        workers.append(engagement_worker(client, pool, settings, interceptors))
    if TELEGRAM_TASK_QUEUE in queues:
        from telegram_ui.session import make_bot

        bot = make_bot(settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base)
        workers.append(telegram_worker(client, pool, bot, settings, interceptors))
    tasks = [asyncio.create_task(w.run()) for w in workers]
    log.info("polling after %.1f s", time.monotonic() - began)
    chores = []
    if runtime:
        chores.append(asyncio.create_task(report_plan_counts(client, runtime)))
    if bot is not None and settings.stale_buttons_sweep_seconds > 0:
        from telegram_ui.stale_buttons import sweep_forever

        sweep = sweep_forever(bot, pool, settings.stale_buttons_sweep_seconds)
        chores.append(asyncio.create_task(sweep))
    try:
        yield
    finally:
        for chore in chores:
            chore.cancel()
        # Graceful: stop polling, let running activities finish.
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)
        if bot is not None:
            await bot.session.close()
        await pool.close()


def _import_clients(settings: Settings, queues: set[str]) -> None:
    if TELEGRAM_TASK_QUEUE in queues:
        importlib.import_module("activities.telegram")
    if ENGAGEMENT_TASK_QUEUE in queues and (
        revealed(settings.openai_api_key) or settings.openai_base_url
    ):
        importlib.import_module("openai")


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_workers(settings):
        log.info("worker running on %s", " and ".join(settings.worker_queues))
        await stop.wait()
        log.info("shutting down")


def main() -> None:
    settings = load_settings()
    setup_logging(settings.log_format, settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
