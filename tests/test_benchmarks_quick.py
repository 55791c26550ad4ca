"""`python -m benchmarks all --quick` runs the whole stack end to end and prints every figure.

Nothing here is about speed (the machine is shared): the benchmark must start the real
stack, drive every row group of issue 9, print one table with every figure and leave no
process behind. BENCHMARKS.md has the full-size figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FIGURES = [
    "enrolment: start_plan accepted",
    "enrolment: started and mirrored (bot path)",
    "worker RSS, ",
    "reminder lateness p50 / p99 / max, no taps",
    "stream: work per second and its CPU",
    "the same due times, 15-min poller p50 / p99 / max",
    "the same due times, 60-s poller p50 / p99 / max",
    "button tap → answered and state changed, p50 / p95",
    "button tap → answered, p50 / p95, taps alone",
    "button tap → answered, p50 / p95, taps alone, plans in the cache",
    "workflow tasks per reminder (mean / max)",
    "per completed plan: workflow tasks / Actions",
    "10,000 leads/month on Temporal Cloud",
    "where a reminder's lateness goes",
    "workflow task timeouts / failures in those histories",
    "reminders due while no worker ran",
    "catch-up: sustained / overall send rate",
    "catch-up: 429s (bot-wide + per chat) / duplicates",
    "catch-up: oldest due first",
    "catch-up: lateness p50 / max",
    "worker log: slow-task warnings / tasks not found",
    "RSS growth",
    "1 worker process",
    "2 worker processes",
]


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_quick_benchmarks_print_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks", "all", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(out.read_text())["figures"]
    names = [f["name"] for f in figures]
    for wanted in FIGURES:
        assert any(name.startswith(wanted) for name in names), f"{wanted!r} not measured"
        assert wanted in run.stdout, f"{wanted!r} not printed"
    # Every figure has a value; the table names the machine load it was measured under.
    assert all(f["value"] for f in figures)
    assert "load average at start" in run.stdout
    # The stack is gone: no server or worker of this run outlives it.
    workdir = next(
        line.split()[2] for line in run.stdout.splitlines() if line.startswith("stack in")
    )
    leftover = subprocess.run(["pgrep", "-f", workdir], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", f"processes left running: {leftover.stdout}"
