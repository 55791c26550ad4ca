"""The fault suite, full size: what an owner and an operator notice under faults.

Starts its own Temporal dev server and a PostgreSQL it may stop, the Telegram/OpenAI
emulators and real `worker.py` processes, then runs the scenarios of
tests/faults/scenarios.py at full size (the default test command runs a short version):

    .venv/bin/python benchmarks/faults.py                 # everything, full size
    .venv/bin/python benchmarks/faults.py --only kill --plans 300 --kills 7
    .venv/bin/python benchmarks/faults.py --quick         # the short sizes

Results: one line per scenario on stdout (and --json FILE); RELIABILITY.md records them.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.testing import WorkflowEnvironment

from devstack import dev_server_flags
from temporal_converter import DATA_CONVERTER
from tests.conftest import TEMPORAL_CLI
from tests.faults import scenarios
from tests.faults.harness import StoppablePostgres

SCENARIOS = ("kill", "postgres", "telegram", "planner")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=SCENARIOS, action="append")
    parser.add_argument("--quick", action="store_true", help="the short sizes of the tests")
    parser.add_argument("--plans", type=int, help="plans for kill/postgres/telegram")
    parser.add_argument("--kills", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="steps per plan")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds PostgreSQL is down")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    quick = args.quick
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        data_converter=DATA_CONVERTER,
        dev_server_extra_args=dev_server_flags({}),  # the server's own partitions, as recorded
    )  # fmt: skip
    pg = StoppablePostgres()
    workdir = Path(tempfile.mkdtemp(prefix="leadpilot-faults-"))
    results = []
    try:
        for name in args.only or SCENARIOS:
            began = time.monotonic()
            if name == "kill":
                fig = await scenarios.worker_kills(
                    env.client, pg, workdir, plans=args.plans or (12 if quick else 300),
                    kills=1 if quick else args.kills, step_count=args.steps,
                )  # fmt: skip
            elif name == "postgres":
                fig = await scenarios.postgres_outage(
                    env.client, pg, workdir, plans=args.plans or (8 if quick else 100),
                    seconds=8 if quick else args.outage, step_count=args.steps,
                )  # fmt: skip
            elif name == "telegram":
                fig = await scenarios.telegram_faults(
                    env.client, pg, workdir, plans=args.plans or (9 if quick else 150),
                    burst=6 if quick else 30, step_count=args.steps,
                )  # fmt: skip
            else:
                fig = await scenarios.planner_faults(
                    env.client, pg, workdir, plans=3 if quick else 12
                )
            fig.notes["run_seconds"] = round(time.monotonic() - began)
            print(fig.line(), flush=True)
            results.append(dataclasses.asdict(fig))
    finally:
        pg.cleanup()
        await env.shutdown()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print(f"worker logs: {workdir}")


if __name__ == "__main__":
    asyncio.run(main())
