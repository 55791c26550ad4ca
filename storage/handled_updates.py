"""bot_updates_handled: which Telegram updates a bot process has finished handling.

Telegram delivers an update again until a webhook answers it (and a long-polling bot
confirms it); the ids let a second copy of an update that was handled be skipped.
"""

from __future__ import annotations

from storage.db import Queryable

# Telegram keeps an undelivered update for 24 hours; ids are kept a day beyond that.
RETENTION_HOURS = 48


class HandledUpdates:
    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def seen(self, bot_id: int, update_id: int) -> bool:
        return bool(
            await self._db.fetchval(
                "SELECT 1 FROM bot_updates_handled WHERE bot_id = $1 AND update_id = $2",
                bot_id,
                update_id,
            )
        )

    async def record(self, bot_id: int, update_id: int) -> None:
        await self._db.execute(
            "INSERT INTO bot_updates_handled (bot_id, update_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING",
            bot_id,
            update_id,
        )

    async def forget_old(self, hours: int = RETENTION_HOURS) -> None:
        await self._db.execute(
            "DELETE FROM bot_updates_handled WHERE handled_at < now() - make_interval(hours => $1)",
            hours,
        )
