"""CPU per replayed plan in each `WORKFLOW_SANDBOX` mode (no server needed).

Replays one recorded history (tests/histories/) N times with the worker's runner for
each mode; a replay creates the workflow instance as a cache miss in the worker does.

    .venv/bin/python benchmarks/sandbox_cost.py --replays 200
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from settings import Settings
from temporal_converter import DATA_CONVERTER
from worker import plan_runner
from workflows.engagement_plan import EngagementPlanWorkflow

ROOT = Path(__file__).resolve().parent.parent


async def cost(mode: str, text: str, replays: int) -> float:
    settings = Settings(database_url="postgresql://unused", telegram_bot_token="1:unused",
                        workflow_sandbox=mode)  # fmt: skip
    replayer = Replayer(
        workflows=[EngagementPlanWorkflow],
        workflow_runner=plan_runner(settings),
        data_converter=DATA_CONVERTER,
    )

    async def histories() -> AsyncIterator[WorkflowHistory]:
        for i in range(replays):
            yield WorkflowHistory.from_json(f"lead-{i}", text)

    began = time.process_time()
    async with replayer.workflow_replay_iterator(histories()) as results:
        async for result in results:
            if result.replay_failure:
                raise result.replay_failure
    return (time.process_time() - began) / replays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replays", type=int, default=200)
    parser.add_argument("--history", default="pause_resume.json")
    args = parser.parse_args()
    path = ROOT / "tests" / "histories" / args.history
    text = path.read_text()
    events = len(WorkflowHistory.from_json("lead-0", text).events)
    for mode in ("off", "shared", "full", "off"):  # the first "off" warms up imports
        seconds = asyncio.run(cost(mode, text, args.replays))
        print(f"WORKFLOW_SANDBOX={mode:<7} {seconds * 1000:5.1f} ms CPU per replay "
              f"({path.name}, {events} events)")  # fmt: skip


if __name__ == "__main__":
    main()
