"""The status lists exist in Python (storage's row enums, the workflow's own enums) and in
SQL (CHECK constraints): read the constraints a migrated PostgreSQL actually has and hold
every list to them, so a status added on one side only fails here, not in production."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import get_args

import asyncpg

from storage.bulk_jobs import BulkAction
from storage.deliveries import Withdrawn
from storage.lead_views import MirroredPlanStatus
from storage.models import DeliveryStatus, LeadStatus, ReminderStatus
from workflows.models import NotSentReason, PlanStatus, StepStatus

# Every one-column CHECK that lists the allowed values, with the Python lists bound to it.
# A value list with no Python counterpart is written here as a literal, with the reason.
CHECKED: dict[tuple[str, str], list[set[str]]] = {
    ("lead_registry", "status"): [set(LeadStatus)],
    ("scheduled_reminders", "status"): [set(ReminderStatus), set(StepStatus)],
    ("telegram_deliveries", "status"): [set(DeliveryStatus)],
    ("bot_bulk_jobs", "action"): [set(get_args(BulkAction))],
    # No enum: only storage/bulk_jobs.py's own SQL writes and reads it.
    ("bot_bulk_jobs", "status"): [{"running", "done", "superseded"}],
}

_VALUE_CHECKS = """
SELECT c.conrelid::regclass::text AS tbl, a.attname AS col, pg_get_constraintdef(c.oid) AS def
FROM pg_constraint c
JOIN pg_namespace n ON n.oid = c.connamespace
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
WHERE c.contype = 'c' AND n.nspname = 'public' AND cardinality(c.conkey) = 1
"""


def _values(definition: str) -> set[str] | None:
    """The allowed values of `CHECK ((col = ANY (ARRAY['a'::text, …])))`, as PostgreSQL
    prints it; None for a CHECK of another shape."""
    if "= ANY (ARRAY[" not in definition:
        return None
    return {v.replace("''", "'") for v in re.findall(r"'((?:[^']|'')*)'::text", definition)}


async def test_every_status_enum_matches_its_check_constraint(pool: asyncpg.Pool) -> None:
    installed: dict[tuple[str, str], set[str]] = {}
    for row in await pool.fetch(_VALUE_CHECKS):
        values = _values(row["def"])
        if values is not None:
            installed[(row["tbl"], row["col"])] = values
    # Each value-list CHECK is bound above (a new one must be added there), and exists.
    assert installed.keys() == CHECKED.keys()
    for column, lists in CHECKED.items():
        for python_side in lists:
            assert python_side == installed[column], column


def test_storage_mirrors_of_workflow_enums_agree() -> None:
    """storage does not import workflows, so it keeps copies; they must not drift."""
    pairs: list[tuple[type[StrEnum], type[StrEnum]]] = [
        (MirroredPlanStatus, PlanStatus),
        (ReminderStatus, StepStatus),
        (Withdrawn, NotSentReason),
    ]
    for copy, original in pairs:
        assert {m.name: m.value for m in copy} == {m.name: m.value for m in original}, copy
