"""The processes as an operator starts them: clear one-line errors, migrate, graceful stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.rig import eventually

ROOT = Path(__file__).resolve().parent.parent
LEADPILOT = Path(sys.prefix) / "bin" / "leadpilot"


async def run(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def clean_env(**extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return keep | extra


async def spawn(*args: str, env: dict[str, str], until: bytes) -> asyncio.subprocess.Process:
    """Start a process (stderr into stdout) and return once it has printed `until`."""
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = b""
    while until not in seen:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line, seen.decode()
        seen += line
    return proc


@pytest.mark.parametrize("command", ["worker", "bot"])
async def test_missing_settings_stop_with_one_line(command: str) -> None:
    code, _, err = await run(str(LEADPILOT), command, env=clean_env())
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "missing required setting DATABASE_URL" in lines[0]
    assert "TELEGRAM_BOT_TOKEN" in lines[0]


async def test_migrate_command(empty_db_url: str) -> None:
    code, out, _ = await run(str(LEADPILOT), "migrate", env=clean_env(DATABASE_URL=empty_db_url))
    assert code == 0 and "applied 001_schema.sql" in out
    code, out, _ = await run(str(LEADPILOT), "migrate", env=clean_env(DATABASE_URL=empty_db_url))
    assert code == 0 and "up to date" in out
    code, _, err = await run(
        str(LEADPILOT), "migrate", env=clean_env(DATABASE_URL="postgresql://nobody@127.0.0.1:1/x")
    )
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.e2e
async def test_worker_process_stops_gracefully_on_sigterm(
    dev_env: Any, db_url: str, telegram: Any
) -> None:
    env = clean_env(
        DATABASE_URL=db_url,
        TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
        TELEGRAM_BOT_TOKEN=telegram.token,
        TELEGRAM_API_BASE=telegram.base_url,
    )
    proc = await spawn(sys.executable, "worker.py", env=env, until=b"worker running")
    assert proc.stdout is not None
    proc.send_signal(signal.SIGTERM)
    rest = await asyncio.wait_for(proc.stdout.read(), 30)
    assert await proc.wait() == 0
    assert b"shutting down" in rest and b"Traceback" not in rest


async def test_dev_reports_a_busy_port_in_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 7233))
        taken.listen()
        code, _, err = await run(
            str(LEADPILOT), "dev", env=clean_env(LEADPILOT_DATA_DIR=str(tmp_path)), timeout=120
        )
    assert code == 1
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("leadpilot dev: port 7233 (Temporal) is already in use")
    )
    assert "Traceback" not in err


@pytest.mark.e2e
async def test_dev_brings_the_stack_up_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    """`leadpilot dev`: prints where everything is, serves the web chat and the Temporal UI,
    answers /start through the bot, and on Ctrl-C stops every process it started."""
    import aiohttp

    proc = await asyncio.create_subprocess_exec(
        str(LEADPILOT), "dev", "--day-seconds", "30",
        cwd=ROOT, env=clean_env(LEADPILOT_DATA_DIR=str(tmp_path)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    out = b""
    try:
        while b"ready" not in out:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line, out.decode()
            out += line
        text = out.decode()
        for shown in (
            "database",
            "Web UI: http://127.0.0.1:8233",
            "web chat      http://127.0.0.1:8081/chat",
        ):
            assert shown in text
        async with aiohttp.ClientSession() as http:
            async with http.get("http://127.0.0.1:8233/") as ui:
                assert ui.status == 200
            async with http.get("http://127.0.0.1:8081/chat") as page:
                assert page.status == 200
            async with http.post(
                "http://127.0.0.1:8081/chat/api/send", json={"text": "/start"}
            ) as sent:
                assert sent.status == 200

            async def welcomed() -> bool:
                async with http.get("http://127.0.0.1:8081/chat/api/history") as r:
                    return any("Welcome" in (m["text"] or "") for m in (await r.json())["messages"])

            await eventually(welcomed, timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(proc.stdout.read(), 60)
        code = await proc.wait()
    assert code == 0, rest.decode()
    assert b"Traceback" not in rest
    ps = await asyncio.create_subprocess_exec("ps", "-eo", "args", stdout=asyncio.subprocess.PIPE)
    listing = (await ps.communicate())[0].decode()
    assert str(tmp_path) not in listing  # neither PostgreSQL nor the Temporal server is left
