"""Apply the numbered SQL files in migrations/ once each, in order, recording what ran.

Safe to run from several processes at once (a session advisory lock serialises them) and
safe to run again (applied files are skipped). An applied file whose content changed is an
error, never silently re-applied or ignored: the database would no longer match the repo.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# Fixed key for pg_advisory_lock (a hash, to stay clear of other apps' keys). Advisory locks are
# per database, so migrating two databases of one server does not serialise them.
MIGRATION_LOCK_KEY = int.from_bytes(hashlib.sha256(b"leadpilot:migrate").digest()[:8]) >> 1

_FILENAME = re.compile(r"^(\d+)_[A-Za-z0-9_\-]+\.sql$")

# RLS without policies: only the owner (the migrating role) reads the ledger. Created
# once, so a later run by a role that isn't the owner still works.
_CREATE_LEDGER = """
DO $$
BEGIN
    IF to_regclass('schema_migrations') IS NULL THEN
        CREATE TABLE schema_migrations (
            filename   text PRIMARY KEY,
            checksum   text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        );
        ALTER TABLE schema_migrations ENABLE ROW LEVEL SECURITY;
    END IF;
END
$$;
"""


class MigrationError(Exception):
    """A migration can't be applied; the message names the file and the reason."""


@dataclass(frozen=True)
class MigrationFile:
    number: int
    name: str
    sql: str
    checksum: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[MigrationFile]:
    """The *.sql files of `directory` in numeric order; a misnamed file is an error."""
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    files: list[MigrationFile] = []
    for path in directory.glob("*.sql"):
        match = _FILENAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path.name}: migration files must be named NNN_name.sql (e.g. 003_add_x.sql)"
            )
        data = path.read_bytes()
        files.append(
            MigrationFile(
                number=int(match.group(1)),
                name=path.name,
                sql=data.decode("utf-8"),
                checksum=hashlib.sha256(data).hexdigest(),
            )
        )
    files.sort(key=lambda f: (f.number, f.name))
    for prev, cur in itertools.pairwise(files):
        if prev.number == cur.number:
            raise MigrationError(f"{prev.name} and {cur.name} share the number {cur.number}")
    return files


async def apply_migrations(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations, each in its own transaction; return the names applied."""
    migrations = load_migrations(directory)
    conn = await asyncpg.connect(dsn)
    try:
        # Session-level, so it spans the per-file transactions; a second runner waits here
        # and then finds everything applied.
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            return await _apply_locked(conn, migrations)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await conn.close()


async def _apply_locked(conn: asyncpg.Connection, migrations: list[MigrationFile]) -> list[str]:
    await conn.execute(_CREATE_LEDGER)
    rows = await conn.fetch("SELECT filename, checksum FROM schema_migrations")
    applied = {r["filename"]: r["checksum"] for r in rows}

    # Check every applied file before applying anything, so a refusal changes nothing.
    for m in migrations:
        stored = applied.get(m.name)
        if stored is not None and stored != m.checksum:
            raise MigrationError(
                f"{m.name} was already applied but its content changed "
                f"(sha256 {stored[:12]}… → {m.checksum[:12]}…); "
                "restore it and put the change in a new numbered file"
            )

    done: list[str] = []
    for m in migrations:
        if m.name in applied:
            continue
        try:
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (filename, checksum) VALUES ($1, $2)",
                    m.name,
                    m.checksum,
                )
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"{m.name} failed: {_one_line(str(exc))}") from exc
        done.append(m.name)
    return done


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """`leadpilot migrate`: DATABASE_URL from the environment.

    Returns 0 on success; on any failure prints one line to stderr and exits 1.
    """
    parser = argparse.ArgumentParser(
        prog="leadpilot migrate", description="Apply pending database migrations."
    )
    parser.add_argument(
        "--directory", type=Path, default=MIGRATIONS_DIR, help="folder of NNN_name.sql files"
    )
    args = parser.parse_args(argv)

    dsn = os.environ.get("DATABASE_URL", "").strip()
    if not dsn:
        _fail("missing required setting DATABASE_URL")
    try:
        applied = asyncio.run(apply_migrations(dsn, args.directory))
    except MigrationError as exc:
        _fail(str(exc))
    except Exception as exc:  # connection refused, bad DSN, auth, ...: one line, no traceback
        _fail(f"cannot migrate the database: {_one_line(str(exc)) or type(exc).__name__}")
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("database schema is up to date")
    return 0


def _fail(message: str) -> NoReturn:
    print(f"leadpilot migrate: {_one_line(message)}", file=sys.stderr)
    raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(main())
