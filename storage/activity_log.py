"""lead_activity_log: what happened to a lead, for the owner and for support."""

from __future__ import annotations

import json
from typing import Any

from storage.db import Queryable, affected_rows
from storage.models import ActivityLogEntry


class ActivityLogRepository:
    """Append-only log; pass a pool, or a connection to share its transaction."""

    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def add(
        self,
        lead_id: int,
        telegram_id: int,
        activity_type: str,
        content: str | None,
        metadata: dict[str, Any] | None = None,
        dedupe_key: str | None = None,
    ) -> bool:
        """Append an entry; False if one with this dedupe_key already exists.

        Retried activities pass a dedupe_key so the entry lands once; without a key every
        call appends.
        """
        status = await self._db.execute(
            """
            INSERT INTO lead_activity_log
                (lead_id, telegram_id, activity_type, content, metadata, dedupe_key)
            VALUES ($1, $2, $3, $4, $5::text::jsonb, $6)
            ON CONFLICT (dedupe_key) DO NOTHING
            """,
            lead_id,
            telegram_id,
            activity_type,
            content,
            json.dumps(metadata or {}, default=str),
            dedupe_key,
        )
        return affected_rows(status) == 1

    async def for_lead(self, lead_id: int, limit: int = 50) -> list[ActivityLogEntry]:
        """The lead's most recent entries, newest first. No production caller: tests read the
        log through it (the bot and Mini App read it in storage/lead_views, webapp/queries)."""
        rows = await self._db.fetch(
            """
            SELECT * FROM lead_activity_log WHERE lead_id = $1
            ORDER BY created_at DESC, id DESC
            LIMIT $2
            """,
            lead_id,
            limit,
        )
        return [ActivityLogEntry.from_record(r) for r in rows]
