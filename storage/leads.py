"""lead_registry: the leads and their displayed plan."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from storage.db import Queryable
from storage.models import Lead, LeadStatus


class StatusChange(NamedTuple):
    """Result of set_status; the previous status tells the caller whether anything changed
    (e.g. a lead just closed must cancel its plan, an already closed one need not)."""

    previous_status: LeadStatus
    lead: Lead


class LeadRepository:
    """Leads; pass a pool, or a connection to share its transaction."""

    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def create(
        self,
        telegram_id: int,
        prospect_name: str,
        prospect_company: str | None = None,
        prospect_title: str | None = None,
        original_context: str | None = None,
    ) -> Lead:
        row = await self._db.fetchrow(
            """
            INSERT INTO lead_registry
                (telegram_id, prospect_name, prospect_company, prospect_title, original_context)
            VALUES ($1, $2, $3, $4, $5)
            RETURNING *
            """,
            telegram_id,
            prospect_name,
            prospect_company,
            prospect_title,
            original_context,
        )
        return Lead.from_record(row)

    async def get(self, lead_id: int) -> Lead | None:
        """Any owner's lead: for the worker. Owner-facing code uses get_owned."""
        row = await self._db.fetchrow("SELECT * FROM lead_registry WHERE id = $1", lead_id)
        return None if row is None else Lead.from_record(row)

    async def get_owned(self, lead_id: int, telegram_id: int) -> Lead | None:
        """The lead if `telegram_id` owns it; a foreign id looks exactly like a missing one."""
        row = await self._db.fetchrow(
            "SELECT * FROM lead_registry WHERE id = $1 AND telegram_id = $2",
            lead_id,
            telegram_id,
        )
        return None if row is None else Lead.from_record(row)

    async def list_for_owner(
        self, telegram_id: int, limit: int = 10, offset: int = 0
    ) -> list[Lead]:
        """Newest first, for paging. No production caller: the tests' view of an owner's
        leads (/leads reads storage/lead_views, the Mini App webapp/queries)."""
        rows = await self._db.fetch(
            """
            SELECT * FROM lead_registry WHERE telegram_id = $1
            ORDER BY created_at DESC, id DESC
            LIMIT $2 OFFSET $3
            """,
            telegram_id,
            limit,
            offset,
        )
        return [Lead.from_record(r) for r in rows]

    async def count_for_owner(self, telegram_id: int) -> int:
        """No production caller: the tests' count of an owner's leads (see list_for_owner)."""
        count = await self._db.fetchval(
            "SELECT count(*) FROM lead_registry WHERE telegram_id = $1", telegram_id
        )
        return int(count)

    async def set_status(
        self, lead_id: int, telegram_id: int, status: LeadStatus
    ) -> StatusChange | None:
        """Change the status if `telegram_id` owns the lead; None otherwise.

        The CTE locks the row and reads the old status in the same statement, so two
        concurrent changes serialise and each sees the status it really replaced.
        """
        row = await self._db.fetchrow(
            """
            WITH old AS (
                SELECT id, status FROM lead_registry
                WHERE id = $1 AND telegram_id = $2
                FOR UPDATE
            )
            UPDATE lead_registry l SET status = $3
            FROM old WHERE l.id = old.id
            RETURNING old.status AS previous_status, l.*
            """,
            lead_id,
            telegram_id,
            LeadStatus(status).value,
        )
        if row is None:
            return None
        data = dict(row)
        previous = LeadStatus(data.pop("previous_status"))
        return StatusChange(previous, Lead.model_validate(data))

    async def set_engagement_plan(
        self, lead_id: int, plan_version: int, plan: list[dict[str, Any]]
    ) -> bool:
        """Store the plan as displayed unless a newer version is already stored.

        Returns whether it was written; an equal version overwrites (a retried write).
        """
        row = await self._db.fetchrow(
            """
            UPDATE lead_registry SET engagement_plan = $3::text::jsonb, plan_version = $2
            WHERE id = $1 AND plan_version <= $2
            RETURNING id
            """,
            lead_id,
            plan_version,
            json.dumps(plan, default=str),
        )
        return row is not None
