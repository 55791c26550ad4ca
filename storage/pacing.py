"""chat_send_slots: per-chat pacing shared by every worker (SPEC §4: ~1 message/s per chat).

A sender reserves the chat's next free slot with one atomic upsert and waits for it; the
slot is remembered on the delivery row, so a retried attempt keeps its place in line
instead of queueing again. Right before the HTTP call it claims the chat and a place in
the bot-wide window together (`claim_send`), and marks the end of the call (`ended`):
the chat's next claim comes `spacing` after that end, the place's a second after it, so
messages to one chat reach Telegram at least `spacing` apart and the bot never sends
more than its limit in any one second, however late a sender runs. Other chats are
never delayed: each has its own row.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from storage.db import Queryable

# A slot missed by more than this is given up for a fresh one: sending late would put
# this message closer than the spacing to the one holding the next slot.
SLOT_TOLERANCE = 0.3
# Rows of bot_send_window (migration 007): the most messages per second it can keep to.
WINDOW_ROWS = 100
# The share of the window a deferrable message (a nudge, an informative notice) leaves
# free: when the bot runs at its limit, a reminder falling due finds a place at once
# instead of queueing behind messages that could as well go a few seconds later.
URGENT_SHARE = 0.2
# Seconds between a deferrable sender's looks at a busy window or a chat it yields.
DEFERRABLE_POLL = 0.25


class ChatPacer:
    """Per-chat pacing and, with `per_second`, the bot-wide window (at most that many
    messages in any one second, up to WINDOW_ROWS)."""

    def __init__(self, db: Queryable, spacing: float = 1.2, per_second: float = 0) -> None:
        self._db = db
        self._spacing = spacing
        self._window_size = min(WINDOW_ROWS, int(per_second))
        self._urgent_reserve = max(
            0, min(self._window_size - 1, math.ceil(self._window_size * URGENT_SHARE))
        )

    async def slot_wait(
        self, telegram_id: int, delivery_key: str | None, earliest_in: float = 0.0
    ) -> float:
        """Seconds to wait until this delivery's slot (0 if it is now).

        Reuses the slot already held by the delivery while it is still usable, else
        reserves the chat's next free one, `earliest_in` seconds from now at the earliest;
        both in one transaction-free statement each. Without a delivery (the bot's
        replies) the slot is only reserved. A send woken ahead of its due time reserves
        its slot at once, for the due time, so a message queued for the chat meanwhile
        goes after it instead of holding the chat when it falls due.
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
                VALUES ($1, clock_timestamp() + make_interval(secs => $4::float8 + $3::float8))
                ON CONFLICT (telegram_id) DO UPDATE SET next_free_at =
                    greatest(c.next_free_at, clock_timestamp() + make_interval(secs => $4))
                    + make_interval(secs => $3)
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
            max(0.0, earliest_in),
        )
        return max(0.0, float(wait))

    async def claim_send(
        self,
        telegram_id: int,
        hold: float,
        max_wait: float,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        deferrable: str | None = None,
    ) -> Sending | None:
        """Right before an HTTP call: claim the chat and a place in the bot-wide window
        together (`_claim`), waiting up to `max_wait` seconds. None when not granted in
        time. A sender waits holding nothing, so one waiting for the window never keeps
        another message from its chat. `ended` releases both.

        A `deferrable` delivery (its key) takes only a place beyond the share kept for
        urgent messages, and yields its chat to another delivery whose slot has come, or
        is so close that sending now would push it back by more than SLOT_TOLERANCE: a
        notice the window kept past its slot must not hold back the reminder reserved
        after it. (On time, it is not that close to the next slot: slots are `spacing`
        apart.)"""
        reserve = self._urgent_reserve if deferrable else 0
        waited = 0.0
        while isinstance(claim := await self._claim(telegram_id, hold, reserve, deferrable), float):
            if waited + claim > max_wait:
                return None
            await sleep(claim)
            waited += claim
        return claim

    async def _claim(
        self, telegram_id: int, hold: float, reserve: int, yielding: str | None
    ) -> Sending | float:
        """One statement: the chat, if its previous send ended `spacing` ago (and, for the
        `yielding` delivery, no other one's slot is imminent), and a place in
        bot_send_window (migration 007) whose last message ended a second ago, if more
        than `reserve` places are free; both or neither. Each is marked busy for
        `hold` seconds (the request's longest life) until `ended` records when the answer
        came back. Spacing counts from our side of the finished request, which is after
        Telegram saw it, so a sender slowed between its claim and the wire cannot crowd
        the next message; a sender that dies mid-call holds both for `hold` at most.
        The claim, or the seconds to wait before asking again. (Senders claiming
        together may each see the same free count: the reserve is kept closely, not
        exactly.)"""
        row = await self._db.fetchrow(
            """
            WITH free AS (
                SELECT slot FROM bot_send_window
                WHERE slot < $4 AND busy_until <= clock_timestamp() - interval '1 second'
                  AND ($5 = 0 OR (SELECT count(*) FROM bot_send_window WHERE slot < $4
                       AND busy_until <= clock_timestamp() - interval '1 second') > $5)
                ORDER BY busy_until LIMIT 1
                FOR UPDATE SKIP LOCKED
            ), imminent AS (
                SELECT 1 FROM telegram_deliveries d
                WHERE $6::text IS NOT NULL AND d.telegram_id = $1 AND d.status = 'sending'
                  AND d.delivery_key <> $6 AND d.slot_at
                      BETWEEN clock_timestamp() - make_interval(secs => $7)
                          AND clock_timestamp() + make_interval(secs => greatest($2 - $7, 0))
                LIMIT 1
            ), chat AS (
                INSERT INTO chat_send_slots AS c (telegram_id, next_free_at, last_sent_at)
                SELECT $1, clock_timestamp(), clock_timestamp() + make_interval(secs => $3)
                WHERE ($4 = 0 OR EXISTS (SELECT 1 FROM free))
                  AND NOT EXISTS (SELECT 1 FROM imminent)
                ON CONFLICT (telegram_id) DO UPDATE
                    SET last_sent_at = clock_timestamp() + make_interval(secs => $3)
                WHERE c.last_sent_at IS NULL
                   OR c.last_sent_at <= clock_timestamp() - make_interval(secs => $2)
                RETURNING last_sent_at
            ), place AS (
                UPDATE bot_send_window w
                SET busy_until = clock_timestamp() + make_interval(secs => $3)
                FROM free WHERE w.slot = free.slot AND EXISTS (SELECT 1 FROM chat)
                RETURNING w.slot, w.busy_until
            )
            SELECT (SELECT last_sent_at FROM chat) AS chat_mark,
                   (SELECT slot FROM place) AS slot,
                   (SELECT busy_until FROM place) AS slot_mark,
                   $4 = 0 OR EXISTS (SELECT 1 FROM free) AS place_free,
                   EXISTS (SELECT 1 FROM imminent) AS yielded
            """,
            telegram_id,
            self._spacing,
            hold,
            self._window_size,
            reserve,
            yielding,
            SLOT_TOLERANCE,
        )
        if row["chat_mark"] is not None:
            return Sending(telegram_id, row["chat_mark"], row["slot"], row["slot_mark"])
        if not row["place_free"]:
            return await self._place_wait(reserve)
        if row["yielded"]:
            return DEFERRABLE_POLL
        # The chat is in flight: its send ends `spacing` from now at the earliest.
        wait = await self._db.fetchval(
            """
            SELECT least(extract(epoch FROM last_sent_at - clock_timestamp())::float8 + $2, $2)
            FROM chat_send_slots WHERE telegram_id = $1
            """,
            telegram_id,
            self._spacing,
        )
        return max(0.01, float(wait or 0.0))

    async def _place_wait(self, reserve: int) -> float:
        """Seconds until the window's place that frees next beyond the reserve may be
        free: a second after it ended; if it is in flight, look again shortly (a call
        ends in tens of milliseconds)."""
        wait = await self._db.fetchval(
            """
            SELECT CASE WHEN busy_until > clock_timestamp() THEN 0.05
                   ELSE extract(epoch FROM busy_until + interval '1 second'
                                           - clock_timestamp())::float8 END
            FROM bot_send_window WHERE slot < $1 ORDER BY busy_until OFFSET $2 LIMIT 1
            """,
            self._window_size,
            reserve,
        )
        # A deferrable sender looks less often: it is in no hurry, and there may be many.
        return max(DEFERRABLE_POLL if reserve else 0.01, float(wait or 0.0))

    async def ended(self, sending: Sending) -> None:
        """The claimed request has ended (sent, refused or lost): the spacing of its chat
        and its place in the window count from now. Only our own marks are replaced,
        never a later sender's."""
        await self._db.execute(
            """
            UPDATE chat_send_slots SET last_sent_at = least(last_sent_at, clock_timestamp())
            WHERE telegram_id = $1 AND last_sent_at = $2
            """,
            sending.telegram_id,
            sending.chat_mark,
        )
        if sending.slot is not None:
            await self._db.execute(
                """
                UPDATE bot_send_window SET busy_until = least(busy_until, clock_timestamp())
                WHERE slot = $1 AND busy_until = $2
                """,
                sending.slot,
                sending.slot_mark,
            )


@dataclass
class Sending:
    """What one send holds between `claim_send` and `ended`."""

    telegram_id: int
    chat_mark: datetime
    slot: int | None = None
    slot_mark: datetime | None = None
