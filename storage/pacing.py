"""chat_send_slots: per-chat pacing shared by every worker (SPEC §4: ~1 message/s per chat).

A sender reserves the chat's next free slot with one atomic upsert and waits for it; the
slot is remembered on the delivery row, so a retried attempt keeps its place in line
instead of queueing again. Right before the HTTP call it claims the chat (`claim`), and
marks the end of the call (`sent`): the next claim comes `spacing` after that end, so
messages to one chat reach Telegram at least `spacing` apart however late a sender runs.
Other chats are never delayed: each has its own row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from storage.db import Queryable

# A slot missed by more than this is given up for a fresh one: sending late would put
# this message closer than the spacing to the one holding the next slot.
SLOT_TOLERANCE = 0.3


class ChatPacer:
    def __init__(self, db: Queryable, spacing: float = 1.2) -> None:
        self._db = db
        self._spacing = spacing

    async def slot_wait(self, telegram_id: int, delivery_key: str | None) -> float:
        """Seconds to wait until this delivery's slot (0 if it is now).

        Reuses the slot already held by the delivery while it is still usable, else
        reserves the chat's next free one; both in one transaction-free statement each.
        Without a delivery (the bot's replies) the slot is only reserved.
        """
        if delivery_key is not None:
            held = await self._db.fetchval(
                """
                SELECT extract(epoch FROM slot_at - clock_timestamp())::float8
                FROM telegram_deliveries WHERE delivery_key = $1 AND slot_at IS NOT NULL
                """,
                delivery_key,
            )
            if held is not None and held >= -SLOT_TOLERANCE:
                return max(0.0, float(held))
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

    async def claim(self, telegram_id: int, hold: float) -> Claim:
        """Claim the chat for one send, right before its HTTP call.

        The chat is marked busy for `hold` seconds (the request's longest life) until
        `sent` records when the answer came back; the next claim is granted `spacing`
        after that. Spacing counts from our side of the finished request, which is
        after Telegram saw it, so a sender slowed between its claim and the wire (a cold
        worker, a busy loop) cannot crowd the next message. A sender that dies mid-call
        holds the chat for `hold` at most.
        """
        mark = await self._db.fetchval(
            """
            INSERT INTO chat_send_slots AS c (telegram_id, next_free_at, last_sent_at)
            VALUES ($1, clock_timestamp(), clock_timestamp() + make_interval(secs => $3))
            ON CONFLICT (telegram_id) DO UPDATE
                SET last_sent_at = clock_timestamp() + make_interval(secs => $3)
            WHERE c.last_sent_at IS NULL
               OR c.last_sent_at <= clock_timestamp() - make_interval(secs => $2)
            RETURNING last_sent_at
            """,
            telegram_id,
            self._spacing,
            hold,
        )
        if mark is not None:
            return Claim(mark, 0.0)
        # While a send is in flight it ends `spacing` from now at the earliest.
        wait = await self._db.fetchval(
            """
            SELECT least(extract(epoch FROM last_sent_at - clock_timestamp())::float8 + $2, $2)
            FROM chat_send_slots WHERE telegram_id = $1
            """,
            telegram_id,
            self._spacing,
        )
        return Claim(None, max(0.01, float(wait or 0.0)))

    async def sent(self, telegram_id: int, claim: Claim) -> None:
        """The claimed request has ended (sent, refused or lost): the spacing starts now.
        Only our own mark is replaced, never a later sender's."""
        await self._db.execute(
            """
            UPDATE chat_send_slots SET last_sent_at = least(last_sent_at, clock_timestamp())
            WHERE telegram_id = $1 AND last_sent_at = $2
            """,
            telegram_id,
            claim.mark,
        )


@dataclass(frozen=True)
class Claim:
    """A granted claim carries its busy mark; a refused one the seconds to wait first."""

    mark: datetime | None
    wait: float
