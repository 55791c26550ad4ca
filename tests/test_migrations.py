"""Migrations against a real PostgreSQL: ordering, idempotency, locking, drift, RLS shape."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import asyncpg
import pytest

from storage.migrate import MIGRATIONS_DIR, MigrationError, apply_migrations, main

TABLES = (
    "lead_registry",
    "scheduled_reminders",
    "lead_activity_log",
    "users",
    "telegram_deliveries",
)
ALL_FILES = sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))


async def _applied(url: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT filename, checksum FROM schema_migrations ORDER BY filename"
        )
        return [(r["filename"], r["checksum"]) for r in rows]
    finally:
        await conn.close()


async def test_fresh_database_gets_every_file_once_and_rerun_is_noop(empty_db_url: str) -> None:
    assert ALL_FILES[:2] == ["001_schema.sql", "002_rls.sql"]
    assert await apply_migrations(empty_db_url) == ALL_FILES
    recorded = await _applied(empty_db_url)
    assert [name for name, _ in recorded] == ALL_FILES
    assert all(len(checksum) == 64 for _, checksum in recorded)

    assert await apply_migrations(empty_db_url) == []
    assert await _applied(empty_db_url) == recorded


async def test_concurrent_runs_apply_each_file_once(empty_db_url: str) -> None:
    first, second = await asyncio.gather(
        apply_migrations(empty_db_url), apply_migrations(empty_db_url)
    )
    # One runner did the work while the other waited on the lock and found nothing to do.
    assert sorted([first, second], key=len) == [[], ALL_FILES]
    assert [name for name, _ in await _applied(empty_db_url)] == ALL_FILES


async def test_changed_applied_file_is_refused_and_nothing_changes(
    empty_db_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    await apply_migrations(empty_db_url, directory)
    before = await _applied(empty_db_url)

    edited = directory / "001_schema.sql"
    edited.write_text(edited.read_text() + "\nCREATE TABLE sneaky (id int);\n")
    (directory / "999_later.sql").write_text("CREATE TABLE later (id int);\n")

    with pytest.raises(MigrationError, match=re.escape("001_schema.sql")):
        await apply_migrations(empty_db_url, directory)

    assert await _applied(empty_db_url) == before
    conn = await asyncpg.connect(empty_db_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('later')") is None
        assert await conn.fetchval("SELECT to_regclass('sneaky')") is None
    finally:
        await conn.close()


async def test_failing_file_rolls_back_and_names_the_file(
    empty_db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE half (id int); SELECT 1/0;")
    with pytest.raises(MigrationError, match=re.escape("002_bad.sql")):
        await apply_migrations(empty_db_url, tmp_path)
    assert [name for name, _ in await _applied(empty_db_url)] == ["001_ok.sql"]
    conn = await asyncpg.connect(empty_db_url)
    try:
        assert await conn.fetchval("SELECT to_regclass('half')") is None
    finally:
        await conn.close()


async def test_numeric_order_and_misnamed_file(empty_db_url: str, tmp_path: Path) -> None:
    # 10 sorts before 9 as text; numeric order must run 9 first (10 depends on it).
    (tmp_path / "9_base.sql").write_text("CREATE TABLE base (id int PRIMARY KEY);")
    (tmp_path / "10_child.sql").write_text("CREATE TABLE child (id int REFERENCES base);")
    assert await apply_migrations(empty_db_url, tmp_path) == ["9_base.sql", "10_child.sql"]

    (tmp_path / "notes.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=re.escape("notes.sql")):
        await apply_migrations(empty_db_url, tmp_path)


async def test_spec_indexes_exist(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'scheduled_reminders'"
        )
    finally:
        await conn.close()
    defs = [r["indexdef"] for r in rows]
    assert any(
        "(due_at)" in d and "WHERE" in d and "'pending'" in d and "'sent'" in d for d in defs
    ), defs
    assert any(d.endswith("(lead_id, step_id)") for d in defs), defs
    assert any(d.endswith("(telegram_id, status)") for d in defs), defs
    assert any("UNIQUE" in d and "(lead_id, plan_version, step_id)" in d for d in defs), defs


async def test_every_table_has_rls_and_no_policy_is_public(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        rls = dict(
            await conn.fetch(
                """
                SELECT c.relname, c.relrowsecurity FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relkind = 'r'
                """
            )
        )
        policies = await conn.fetch(
            "SELECT tablename, policyname, roles::text[] AS roles FROM pg_policies"
        )
    finally:
        await conn.close()
    assert set(TABLES) <= set(rls)
    assert {t for t, enabled in rls.items() if not enabled} == set()
    assert policies
    assert [p["policyname"] for p in policies if "public" in p["roles"]] == []
    for table in TABLES:
        roles = {r for p in policies if p["tablename"] == table for r in p["roles"]}
        assert roles == {"authenticated", "leadpilot_service"}, table


def test_cli_without_database_url_exits_1_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "DATABASE_URL" in err


def test_cli_unreachable_database_exits_1_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_applies_then_reports_up_to_date(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    assert main([]) == 0
    assert capsys.readouterr().out.split() == [w for f in ALL_FILES for w in ("applied", f)]
    assert main([]) == 0
    assert "up to date" in capsys.readouterr().out
