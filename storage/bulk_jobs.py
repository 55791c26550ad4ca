"""bot_bulk_jobs: a change to all of an owner's plans, run in the background, resumable."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, field_validator

from storage.db import Queryable
from storage.models import CLOSED_LEAD_STATUSES

BulkAction = Literal["set_schedule", "pause", "resume"]
# A newer job supersedes a running one of the same group only: /pause must not cancel
# the rest of a /timezone change.
GROUPS: dict[str, list[str]] = {
    "set_schedule": ["set_schedule"],
    "pause": ["pause", "resume"],
    "resume": ["pause", "resume"],
}
LEASE_SECONDS = 30


class BulkJob(BaseModel):
    id: int
    telegram_id: int
    action: BulkAction
    payload: dict[str, Any]
    lead_ids: list[int]
    done: int
    applied: int
    skipped: int
    message_id: int | None
    status: str
    created_at: datetime

    @field_validator("payload", mode="before")
    @classmethod
    def _decoded(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class BulkJobRepository:
    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def create(
        self, telegram_id: int, action: BulkAction, payload: dict[str, Any], message_id: int | None
    ) -> BulkJob:
        """Fix the owner's open leads now (in one statement with superseding older jobs of
        the group), so a plan added later is not touched twice."""
        row = await self._db.fetchrow(
            """
            WITH superseded AS (
                UPDATE bot_bulk_jobs SET status = 'superseded'
                WHERE telegram_id = $1 AND status = 'running' AND action = ANY($5::text[])
            )
            INSERT INTO bot_bulk_jobs (telegram_id, action, payload, lead_ids, message_id)
            SELECT $1, $2, $3::text::jsonb, coalesce(array_agg(id ORDER BY id), '{}'), $4
            FROM lead_registry
            WHERE telegram_id = $1 AND NOT (status = ANY($6::text[]))
            RETURNING *
            """,
            telegram_id,
            action,
            json.dumps(payload, default=str),
            message_id,
            GROUPS[action],
            [s.value for s in CLOSED_LEAD_STATUSES],
        )
        return BulkJob.model_validate(dict(row))

    async def claim(self) -> BulkJob | None:
        """The oldest running job nobody holds; leased so another replica leaves it."""
        row = await self._db.fetchrow(
            """
            UPDATE bot_bulk_jobs SET lease_until = now() + make_interval(secs => $1)
            WHERE id = (
                SELECT id FROM bot_bulk_jobs
                WHERE status = 'running' AND (lease_until IS NULL OR lease_until < now())
                ORDER BY created_at, id LIMIT 1
                FOR UPDATE SKIP LOCKED
            )
            RETURNING *
            """,
            float(LEASE_SECONDS),
        )
        return None if row is None else BulkJob.model_validate(dict(row))

    async def progress(self, job_id: int, done: int, applied: int, skipped: int) -> bool:
        """Record progress and renew the lease; False if the job was superseded meanwhile."""
        row = await self._db.fetchrow(
            """
            UPDATE bot_bulk_jobs SET done = $2, applied = $3, skipped = $4,
                lease_until = now() + make_interval(secs => $5)
            WHERE id = $1 AND status = 'running'
            RETURNING id
            """,
            job_id,
            done,
            applied,
            skipped,
            float(LEASE_SECONDS),
        )
        return row is not None

    async def finish(self, job_id: int) -> None:
        await self._db.execute(
            "UPDATE bot_bulk_jobs SET status = 'done', lease_until = NULL "
            "WHERE id = $1 AND status = 'running'",
            job_id,
        )

    async def get(self, job_id: int) -> BulkJob | None:
        row = await self._db.fetchrow("SELECT * FROM bot_bulk_jobs WHERE id = $1", job_id)
        return None if row is None else BulkJob.model_validate(dict(row))
