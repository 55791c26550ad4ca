"""users: Telegram users and their reminder schedule."""

from __future__ import annotations

from datetime import datetime, time

from storage.db import Queryable
from storage.models import User


class UserRepository:
    """Users; pass a pool, or a connection to share its transaction."""

    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def upsert(
        self,
        telegram_id: int,
        first_name: str | None,
        last_name: str | None,
        username: str | None,
    ) -> User:
        """Register or refresh names; a returning user keeps their schedule settings.

        Called for every update the bot gets, so unchanged names write nothing (no new row
        version, no row lock): the row is then read as it was before the statement."""
        row = await self._db.fetchrow(
            """
            WITH written AS (
                INSERT INTO users (telegram_id, first_name, last_name, username)
                VALUES ($1, $2, $3, $4)
                ON CONFLICT (telegram_id) DO UPDATE SET
                    first_name = EXCLUDED.first_name,
                    last_name = EXCLUDED.last_name,
                    username = EXCLUDED.username
                WHERE (users.first_name, users.last_name, users.username)
                      IS DISTINCT FROM (EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.username)
                RETURNING *
            )
            SELECT * FROM written
            UNION ALL
            SELECT * FROM users WHERE telegram_id = $1 AND NOT EXISTS (SELECT 1 FROM written)
            """,
            telegram_id,
            first_name,
            last_name,
            username,
        )
        if row is not None:
            return User.from_record(row)
        # The same user's first upsert committed after this statement's snapshot.
        user = await self.get(telegram_id)
        if user is None:
            raise LookupError(f"user {telegram_id} was neither written nor found")
        return user

    async def get(self, telegram_id: int) -> User | None:
        row = await self._db.fetchrow("SELECT * FROM users WHERE telegram_id = $1", telegram_id)
        return None if row is None else User.from_record(row)

    async def update_schedule(
        self,
        telegram_id: int,
        timezone: str | None = None,
        window_start: time | None = None,
        window_end: time | None = None,
        workdays_only: bool | None = None,
    ) -> User | None:
        """Change only the given settings; None if the user isn't registered.

        The timezone is validated by the caller (workflows.models.Schedule); a window that
        doesn't start before it ends violates users_window_check
        (asyncpg.CheckViolationError).
        """
        row = await self._db.fetchrow(
            """
            UPDATE users SET
                timezone = COALESCE($2::text, timezone),
                window_start = COALESCE($3::time, window_start),
                window_end = COALESCE($4::time, window_end),
                workdays_only = COALESCE($5::boolean, workdays_only)
            WHERE telegram_id = $1
            RETURNING *
            """,
            telegram_id,
            timezone,
            window_start,
            window_end,
            workdays_only,
        )
        return None if row is None else User.from_record(row)

    async def set_paused_until(self, telegram_id: int, until: datetime | None) -> User | None:
        """Pause all reminders until `until` (None resumes); None if the user isn't registered."""
        row = await self._db.fetchrow(
            "UPDATE users SET paused_until = $2 WHERE telegram_id = $1 RETURNING *",
            telegram_id,
            until,
        )
        return None if row is None else User.from_record(row)
