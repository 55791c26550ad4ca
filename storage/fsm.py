"""aiogram dialog (FSM) state in PostgreSQL: bot processes keep nothing in memory.

A restart in the middle of /add, or the next answer landing on another bot replica,
continues the dialog from the `bot_fsm_state` row (migration 005).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, StateType, StorageKey

from storage.db import Queryable, create_pool

log = logging.getLogger("leadpilot.bot")

_KEY = "bot_id, chat_id, user_id, thread_id, business_connection_id, destiny"


def _key_args(key: StorageKey) -> tuple[int, int, int, int, str, str]:
    return (
        key.bot_id,
        key.chat_id,
        key.user_id,
        key.thread_id or 0,
        key.business_connection_id or "",
        key.destiny,
    )


def _state_name(state: StateType) -> str | None:
    return state.state if isinstance(state, State) else state


class PostgresStorage(BaseStorage):
    """One row per StorageKey; every call is a single statement, so concurrent replicas
    never lose each other's writes to the other column (state vs data).

    A row with no state and no data is deleted, so finished dialogs leave nothing behind.
    """

    def __init__(self, db: Queryable) -> None:
        self._db = db

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        await self._db.execute(
            f"""
            INSERT INTO bot_fsm_state ({_KEY}, state) VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT ({_KEY}) DO UPDATE SET state = EXCLUDED.state, updated_at = now()
            """,
            *_key_args(key),
            _state_name(state),
        )
        await self._forget_if_empty(key)

    async def get_state(self, key: StorageKey) -> str | None:
        value = await self._db.fetchval(
            f"SELECT state FROM bot_fsm_state WHERE ({_KEY}) = ($1, $2, $3, $4, $5, $6)",
            *_key_args(key),
        )
        return None if value is None else str(value)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._db.execute(
            f"""
            INSERT INTO bot_fsm_state ({_KEY}, data)
            VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)
            ON CONFLICT ({_KEY}) DO UPDATE SET data = EXCLUDED.data, updated_at = now()
            """,
            *_key_args(key),
            json.dumps(dict(data)),
        )
        await self._forget_if_empty(key)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        value = await self._db.fetchval(
            f"SELECT data::text FROM bot_fsm_state WHERE ({_KEY}) = ($1, $2, $3, $4, $5, $6)",
            *_key_args(key),
        )
        return {} if value is None else dict(json.loads(value))

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        """Merge in one statement (jsonb ||), not read-modify-write."""
        value = await self._db.fetchval(
            f"""
            INSERT INTO bot_fsm_state ({_KEY}, data)
            VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb)
            ON CONFLICT ({_KEY}) DO UPDATE
                SET data = bot_fsm_state.data || EXCLUDED.data, updated_at = now()
            RETURNING data::text
            """,
            *_key_args(key),
            json.dumps(dict(data)),
        )
        return dict(json.loads(value))

    async def _forget_if_empty(self, key: StorageKey) -> None:
        await self._db.execute(
            f"""
            DELETE FROM bot_fsm_state
            WHERE ({_KEY}) = ($1, $2, $3, $4, $5, $6) AND state IS NULL AND data = '{{}}'::jsonb
            """,
            *_key_args(key),
        )

    async def forget_stale(self, older_than_days: int) -> int:
        """Drop dialogs nobody touched for this long (a half-typed lead is personal data)."""
        tag = await self._db.execute(
            "DELETE FROM bot_fsm_state WHERE updated_at < now() - make_interval(days => $1)",
            older_than_days,
        )
        return int(tag.rsplit(" ", 1)[-1])

    async def close(self) -> None:
        """The pool belongs to the process, not to the storage; nothing to close."""


def lock_name(key: StorageKey) -> str:
    """The advisory lock of one chat's updates (hashed to a bigint by PostgreSQL)."""
    return f"leadpilot-chat:{key.bot_id}:{key.chat_id}:{key.user_id}:{key.thread_id or 0}"


async def create_lock_pool(dsn: str) -> asyncpg.Pool:
    """The pool of `PostgresEventIsolation`: its one connection holds the process's chat
    locks, and one given back is reset, so its locks go with it."""
    return await create_pool(dsn, max_size=1, session_locks=True)


class PostgresEventIsolation(BaseEventIsolation):
    """One update of a chat at a time across every bot process (webhook replicas).

    First an in-process lock (arrival order), then a place among the `chats_at_once`
    chats this process handles together, then the chat's PostgreSQL session advisory
    lock. All of a process's chat locks live on one connection of `lock_pool`, taken with
    `pg_try_advisory_lock`: a lock held elsewhere means another replica is handling the
    chat, so it is tried again shortly. A chat's lock then costs no connection of its
    own, and a slow handler (a Temporal update waiting for a worker) holds no connection
    that other chats need. Should that connection break, its locks are gone with it (as
    any session lock would be); the update that finds it broken opens another.
    """

    RETRY_FIRST = 0.02  # seconds; doubling up to RETRY_MAX while another replica has the chat
    RETRY_MAX = 0.25

    def __init__(self, lock_pool: asyncpg.Pool, chats_at_once: int = 100) -> None:
        self._pool = lock_pool
        self._slots = asyncio.Semaphore(chats_at_once)
        # In-process locks with the number of updates holding or awaiting each, so a
        # chat's lock is dropped when idle (aiogram's SimpleEventIsolation keeps them all).
        self._local: dict[StorageKey, tuple[asyncio.Lock, int]] = {}
        self._session: Any = None  # the pooled connection holding this process's locks
        self._session_busy = asyncio.Lock()  # one statement at a time on a connection

    @asynccontextmanager
    async def _local_lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        lock, users = self._local.get(key, (asyncio.Lock(), 0))
        self._local[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            # `close()` may have dropped the table meanwhile (shutdown with updates in flight).
            held = self._local.pop(key, None)
            if held is not None and held[1] > 1:
                self._local[key] = (held[0], held[1] - 1)

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        name = lock_name(key)
        async with self._local_lock(key), self._slots:
            session = await self._take(name)
            try:
                yield
            finally:
                await self._give_back(name, session)

    async def _take(self, name: str) -> Any:
        """The chat's advisory lock; returns the session that holds it. A session found
        broken (the database restarted, the connection was killed) is replaced once; a
        fresh one failing too means the database is away, and the update fails."""
        wait = self.RETRY_FIRST
        while True:
            async with self._session_busy:
                fresh = self._session is None
                if fresh:
                    self._session = await self._pool.acquire()
                session = self._session
                try:
                    got = await session.fetchval(
                        "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", name
                    )
                except asyncio.CancelledError:
                    await self._drop(session)
                    raise
                except Exception as err:  # asyncpg reports a dead session in several ways
                    await self._drop(session)
                    if fresh:
                        raise
                    log.warning("chat lock connection broken (%r); opening another", err)
                    continue
            if got:
                return session
            await asyncio.sleep(wait)
            wait = min(wait * 2, self.RETRY_MAX)

    async def _give_back(self, name: str, session: Any) -> None:
        async with self._session_busy:
            if session is not self._session:
                return  # that connection broke: its locks went with it
            try:
                await session.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", name)
            except asyncio.CancelledError:
                await self._drop(session)
                raise
            except Exception as err:  # the update is done; a lost lock must not fail it
                log.warning("chat lock %s not released (%r); reconnecting", name, err)
                await self._drop(session)

    async def _drop(self, session: Any) -> None:
        """Give the session back to the pool (which resets or closes it, and its locks go
        with it) and forget it."""
        if session is not None and session is self._session:
            self._session = None
            with contextlib.suppress(Exception):
                await self._pool.release(session)

    async def close(self) -> None:
        self._local.clear()
        async with self._session_busy:
            await self._drop(self._session)
