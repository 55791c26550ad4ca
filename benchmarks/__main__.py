"""`python -m benchmarks <group|all> [--quick]`: issue 9's figures on the real stack.

Starts PostgreSQL (embedded), the Temporal dev server (SQLite, WAL pragmas), the
Telegram emulator with Telegram's limits on, the production worker (`worker.py`) as its
own process and — for the tap figures — the bot (`python -m bot`), runs the row groups
and prints one table. Groups:

    scale     enrolment rate, worker RSS at N, reminder lateness with N sleeping plans and a
              stream falling due at 10/s (next to a 15-min and a 60-s poller over the same
              due times), button taps during it, tasks and Actions per reminder and per plan
    catchup   reminders due while no worker runs; the worker back: rate, 429s, duplicates, order
    memory    worker RSS at N and 5N sleeping plans (a fresh worker process)
    scaleout  the same enrolment and reminder burst with 1, then 2 worker processes

    .venv/bin/python -m benchmarks all --quick        # small sizes, under a minute or two
    .venv/bin/python -m benchmarks scale              # 10,000 plans (BENCHMARKS.md)
    .venv/bin/python -m benchmarks scale --send-worker   # sends in a worker process of their own
    .venv/bin/python -m benchmarks memory --plans 10000
    .venv/bin/python -m benchmarks scale --worker-env MAX_CACHED_WORKFLOWS=1000   # compare settings
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import workloads
from benchmarks.stack import Stack, load_average

# In this order under `all`: scale-out uses the two workers started together, catch-up
# restarts the worker last (a worker start costs 10-20 s of aiogram import here).
GROUPS = ("scaleout", "scale", "memory", "catchup")
FULL: dict[str, dict[str, Any]] = {
    "scale": dict(plans=10_000, stream_rate=10.0, stream_seconds=120.0, tap_rate=50.0,
                  lead_time=150, lifecycle_plans=20),
    "catchup": dict(plans=5_000),
    "memory": dict(plans=10_000),
    "scaleout": dict(plans=2_000, burst=1_000),
}  # fmt: skip
QUICK: dict[str, dict[str, Any]] = {
    "scale": dict(plans=60, stream_rate=4.0, stream_seconds=3.0, tap_rate=8.0,
                  lead_time=8, lifecycle_plans=1, lifecycle_steps=3),
    "catchup": dict(plans=30),
    "memory": dict(plans=20),
    "scaleout": dict(plans=30, burst=20),
}  # fmt: skip


async def run(groups: list[str], quick: bool, plans: int | None, worker_env: dict[str, str],
              json_out: Path | None, markdown: Path | None = None,
              argv: list[str] | None = None,
              server_config: dict[str, str] | None = None,
              send_worker: bool = False) -> int:  # fmt: skip
    sizes = QUICK if quick else FULL
    stack = Stack()
    stack.worker_env = worker_env
    stack.server_config.update(server_config or {})
    report = workloads.Report()
    report.context = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {_cores()} cores, {_memory()}",
        "python": platform.python_version(),
        "load average at start": load_average(),
        "worker settings": worker_env or "defaults",
        "worker processes": "plans, and sends on their own" if send_worker else "one",
        "dev server config": dict(stack.server_config),
        "quick": quick,
        "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(f"stack in {stack.workdir} (load {load_average()})", flush=True)
    began = time.monotonic()
    # SIGTERM (a timeout, a test runner) stops the run the way Ctrl-C does: servers are shut.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    try:
        await stack.start()
        if send_worker:  # first, so it is workers[0], the one whose memory is measured
            await stack.start_worker(worker_queues='["engagement"]')
        starting = [stack.start_worker(worker_queues='["telegram"]') if send_worker
                    else stack.start_worker()]  # fmt: skip
        if "scaleout" in groups:
            starting.append(stack.start_worker())
        if "scale" in groups:
            starting.append(stack.start_bot())
        await asyncio.gather(*starting)
        print(f"stack up in {time.monotonic() - began:.1f} s", flush=True)
        for group in groups:
            size = dict(sizes[group])
            if plans is not None:
                size["plans"] = plans
            print(f"== {group} {size}", flush=True)
            if not stack.workers:
                await stack.start_worker()
            if group == "scale":
                await workloads.scale(stack, report, **size)
            elif group == "catchup":
                await workloads.catchup(stack, report, **size)
            elif group == "memory":
                await workloads.memory(stack, report, fresh_worker=not quick, **size)
            else:
                await workloads.scaleout(stack, report, **size)
    finally:
        await stack.close()
    report.context["load average at end"] = load_average()
    report.context["seconds"] = round(time.monotonic() - began)
    print_table(report)
    if json_out:
        figures = {"context": report.context, "figures": [asdict(f) for f in report.figures]}
        await asyncio.to_thread(json_out.write_text, json.dumps(figures, indent=2, default=str))
    if markdown:
        await asyncio.to_thread(markdown.write_text, markdown_table(report))
    return 0


def markdown_table(report: workloads.Report) -> str:
    """The same table for BENCHMARKS.md."""
    lines = [f"- {key}: {value}" for key, value in report.context.items()]
    lines += ["", "| figure | value | target | |", "|---|---|---|---|"]
    for f in report.figures:
        met = {True: "met", False: "**missed**", None: ""}[f.met]
        lines.append(f"| {f.name} | {f.value} | {f.target} | {met} |")
    lines += [""] + [f"- {f.name}: {f.note}" for f in report.figures if f.note]
    return "\n".join(lines) + "\n"


def print_table(report: workloads.Report) -> None:
    print()
    for key, value in report.context.items():
        print(f"{key}: {value}")
    rows = [("group", "figure", "value", "target", "")] + [
        (f.group, f.name, f.value, f.target, {True: "met", False: "MISSED", None: ""}[f.met])
        for f in report.figures
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4])
    notes = [f for f in report.figures if f.note]
    if notes:
        print()
        for f in notes:
            print(f"- {f.name}: {f.note}")


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def _memory() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("group", choices=(*GROUPS, "all"))
    parser.add_argument("--quick", action="store_true", help="small sizes (the test suite)")
    parser.add_argument("--plans", type=int, help="override the group's plan count")
    parser.add_argument(
        "--size", action="append", default=[], metavar="KEY=VALUE",
        help="override another size of the group (e.g. stream_seconds=30)",
    )  # fmt: skip
    parser.add_argument(
        "--worker-env", action="append", default=[], metavar="KEY=VALUE",
        help="a worker setting for this run (e.g. MAX_CACHED_WORKFLOWS=500)",
    )  # fmt: skip
    parser.add_argument(
        "--server-config", action="append", default=[], metavar="KEY=VALUE",
        help="a dev server dynamic config value over leadpilot dev's (e.g. the server's own 4 partitions: matching.numTaskqueueReadPartitions=4)",
    )  # fmt: skip
    parser.add_argument(
        "--send-worker", action="store_true",
        help="scale only: sends in a worker process of their own (WORKER_QUEUES), plans in the other",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--markdown", type=Path, help="also write them as a Markdown table")
    args = parser.parse_args(argv)
    groups = list(GROUPS) if args.group == "all" else [args.group]
    if args.send_worker and groups != ["scale"]:
        parser.error("--send-worker is for the scale group")
    worker_env = dict(kv.split("=", 1) for kv in args.worker_env)
    server = dict(kv.split("=", 1) for kv in args.server_config)
    for kv in args.size:
        key, value = kv.split("=", 1)
        for sizes in (FULL, QUICK):
            for group in sizes.values():
                if key in group:
                    group[key] = type(group[key])(value)
    return asyncio.run(
        run(groups, args.quick, args.plans, worker_env, args.json, args.markdown, argv, server,
            args.send_worker)
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
