"""A running bot for tests: the real dispatcher long-polling the Telegram emulator over
HTTP, real workers (tests/rig.py), the Temporal dev server and embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from bot.app import build_dispatcher, make_process_bot
from emulators.telegram import Message
from settings import Settings
from storage.leads import LeadRepository
from temporal_client import PlanHandle, plan_handle
from tests.rig import PlanRig, plan_rig
from workflows.models import PlanState


class BotStack:
    """What a test drives: the emulator (as users), and the pool/client to check results."""

    def __init__(self, rig: PlanRig, settings: Settings) -> None:
        self.rig = rig
        self.telegram: Any = rig.telegram
        self.pool: asyncpg.Pool = rig.pool
        self.client: Client = rig.client
        self.settings = settings
        self.process: PollingBot | None = None

    async def restart_bot(self) -> None:
        """Stop the bot process and start a new one (new Bot, Dispatcher, storage object)."""
        assert self.process is not None
        await self.process.stop()
        self.process = PollingBot(self.pool, self.client, self.settings)
        self.process.start()

    async def say(self, user: int, text: str, expect: str, timeout: float = 10.0) -> Message:
        """The user types `text`; returns the bot's next message containing `expect`."""
        mark = self.telegram.call_count
        self.telegram.user_says(user, text)
        msg: Message = await self.telegram.wait_for_message(
            user, expect, timeout=timeout, since=mark
        )
        return msg

    async def bulk(self, user: int, command: str, expect: str, timeout: float = 20.0) -> str:
        """A command whose answer a background job edits when done (/timezone, /pause …):
        the text of the reply once it contains `expect`."""
        mark = self.telegram.call_count

        def done(call: Any) -> bool:
            return (
                call.method in ("sendMessage", "editMessageText")
                and call.chat_id == user
                and expect in str(call.params.get("text", ""))
            )

        self.telegram.user_says(user, command)
        call = await self.telegram.wait_for(done, timeout=timeout, since=mark)
        return str(call.params["text"])

    async def add_lead(
        self, user: int, name: str = "Ada Lovelace", company: str = "Analytical Engines"
    ) -> tuple[int, Message]:
        """/add dialog end to end; returns the lead id and the plan message the workflow sent."""
        mark = self.telegram.call_count
        await self.say(user, "/add", "Send their name")
        await self.say(user, name, "Company of")
        await self.say(user, company, "What do you know")
        await self.say(user, "Met at the conference & wants a demo", "Drafting a plan for")
        plan: Message = await self.telegram.wait_for_message(
            user, "Engagement plan", timeout=20, since=mark
        )
        leads = await LeadRepository(self.pool).list_for_owner(user)
        return leads[0].id, plan

    async def tap(self, user: int, message: Message, button: str) -> str:
        """Press a button by its label; returns the callback answer text."""
        qid = self.telegram.press_button(user, message.message_id, button)
        answer = await self.telegram.wait_answered(qid, timeout=15)
        return str(answer.text or "")

    def handle(self, lead_id: int) -> PlanHandle:
        return plan_handle(self.client, lead_id)

    async def state(self, lead_id: int) -> PlanState:
        return await self.handle(lead_id).query("state", result_type=PlanState)


class PollingBot:
    """One bot process as run_bot builds it: retrying Bot, dispatcher, long polling."""

    def __init__(self, pool: asyncpg.Pool, client: Client, settings: Settings) -> None:
        self.bot = make_process_bot(settings, pool)
        self.dp = build_dispatcher(pool, client, settings)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(
            self.dp.start_polling(
                self.bot, handle_signals=False, close_bot_session=False, polling_timeout=1
            )
        )

    async def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            await self.dp.stop_polling()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
        await self.bot.session.close()


@asynccontextmanager
async def bot_stack(
    env: WorkflowEnvironment,
    db_url: str,
    pool: asyncpg.Pool,
    telegram: Any,
    day_seconds: int,
    **extra: Any,
) -> AsyncIterator[BotStack]:
    """`extra` settings (e.g. an OpenAI endpoint) go to the bot and the workers alike."""
    settings = Settings(
        database_url=db_url,
        telegram_bot_token=telegram.token,
        telegram_api_base=telegram.base_url,
        day_seconds=day_seconds,
        **extra,
    )
    async with plan_rig(
        env.client, db_url, pool, telegram, day_seconds=day_seconds, **extra
    ) as rig:
        stack = BotStack(rig, settings)
        stack.process = PollingBot(pool, env.client, settings)
        stack.process.start()
        try:
            yield stack
        finally:
            await stack.process.stop()
