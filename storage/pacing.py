"""chat_send_slots: per-chat pacing shared by every worker (SPEC §4: ~1 message/s per chat).

A sender reserves the chat's next free slot with one atomic upsert and waits for it; the
slot is remembered on the delivery row, so a retried attempt keeps its place in line
instead of queueing again. Other chats are never delayed: each has its own row.
"""

from __future__ import annotations

from storage.db import Queryable

# A slot missed by more than this is given up for a fresh one: sending late would put
# this message closer than the spacing to the one holding the next slot.
SLOT_TOLERANCE = 0.3


class ChatPacer:
    def __init__(self, db: Queryable, spacing: float = 1.2) -> None:
        self._db = db
        self._spacing = spacing

    async def slot_wait(self, telegram_id: int, delivery_key: str) -> float:
        """Seconds to wait until this delivery's slot (0 if it is now).

        Reuses the slot already held by the delivery while it is still usable, else
        reserves the chat's next free one; both in one transaction-free statement each.
        """
        held = await self._db.fetchval(
            """
            SELECT extract(epoch FROM slot_at - clock_timestamp())::float8
            FROM telegram_deliveries WHERE delivery_key = $1 AND slot_at IS NOT NULL
            """,
            delivery_key,
        )
        if held is not None and held >= -SLOT_TOLERANCE:
            return max(0.0, held)
        wait = await self._db.fetchval(
            """
            WITH slot AS (
                INSERT INTO chat_send_slots AS c (telegram_id, next_free_at)
                VALUES ($1, clock_timestamp() + make_interval(secs => $3))
                ON CONFLICT (telegram_id) DO UPDATE SET next_free_at =
                    greatest(c.next_free_at, clock_timestamp()) + make_interval(secs => $3)
                RETURNING next_free_at - make_interval(secs => $3) AS slot_at
            ), mark AS (
                UPDATE telegram_deliveries d SET slot_at = slot.slot_at
                FROM slot WHERE d.delivery_key = $2
            )
            SELECT extract(epoch FROM slot_at - clock_timestamp())::float8 FROM slot
            """,
            telegram_id,
            delivery_key,
            self._spacing,
        )
        return max(0.0, float(wait))

    async def claim(self, telegram_id: int) -> float:
        """Claim "sending now" for the chat: 0 when claimed, else the seconds until the
        previous claim is `spacing` old. Called right before the HTTP request."""
        claimed = await self._db.fetchval(
            """
            INSERT INTO chat_send_slots AS c (telegram_id, next_free_at, last_sent_at)
            VALUES ($1, clock_timestamp(), clock_timestamp())
            ON CONFLICT (telegram_id) DO UPDATE SET last_sent_at = clock_timestamp()
            WHERE c.last_sent_at IS NULL
               OR c.last_sent_at <= clock_timestamp() - make_interval(secs => $2)
            RETURNING true
            """,
            telegram_id,
            self._spacing,
        )
        if claimed:
            return 0.0
        wait = await self._db.fetchval(
            """
            SELECT extract(epoch FROM last_sent_at + make_interval(secs => $2)
                                      - clock_timestamp())::float8
            FROM chat_send_slots WHERE telegram_id = $1
            """,
            telegram_id,
            self._spacing,
        )
        return max(0.01, float(wait or 0.0))
