"""telegram_deliveries: the ledger that bounds duplicate Telegram sends (SPEC §4).

Protocol for a sender: `begin(key)` before sending; if the returned row is already sent,
reuse its message_id instead of sending; otherwise send and `complete(key, message_id)`.
A crash between send and complete can still duplicate one message, never more per attempt.
"""

from __future__ import annotations

from storage.db import Queryable
from storage.models import Delivery


class DeliveryLedger:
    """Delivery rows keyed by delivery_key; pass a pool, or a connection."""

    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def begin(
        self, delivery_key: str, telegram_id: int, lead_id: int | None = None
    ) -> Delivery:
        """Record an attempt: a new row ('sending', attempts 1) or the existing row with
        attempts + 1. Check `.already_sent` on the result before sending."""
        row = await self._db.fetchrow(
            """
            INSERT INTO telegram_deliveries AS d (delivery_key, telegram_id, lead_id, status)
            VALUES ($1, $2, $3, 'sending')
            ON CONFLICT (delivery_key) DO UPDATE SET attempts = d.attempts + 1
            RETURNING *
            """,
            delivery_key,
            telegram_id,
            lead_id,
        )
        return Delivery.from_record(row)

    async def complete(self, delivery_key: str, message_id: int) -> Delivery | None:
        """Mark sent with the Telegram message id; the first completion's id is kept.

        None if begin was never called for the key.
        """
        row = await self._db.fetchrow(
            """
            UPDATE telegram_deliveries SET
                message_id = CASE WHEN status = 'sent' AND message_id IS NOT NULL
                                  THEN message_id ELSE $2 END,
                status = 'sent'
            WHERE delivery_key = $1
            RETURNING *
            """,
            delivery_key,
            message_id,
        )
        return None if row is None else Delivery.from_record(row)

    async def get(self, delivery_key: str) -> Delivery | None:
        row = await self._db.fetchrow(
            "SELECT * FROM telegram_deliveries WHERE delivery_key = $1", delivery_key
        )
        return None if row is None else Delivery.from_record(row)
