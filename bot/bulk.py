"""Changes to all of an owner's plans, off the tap path: /timezone, /window, /workdays,
/pause, /resume.

The handler saves the setting, records a `bot_bulk_jobs` row (which leads, what to do)
and answers at once; this runner, in every bot process, works through the jobs a chunk
at a time, records progress (so a restart resumes, not repeats) and edits the owner's
message with progress and the result. Plans started later get the setting from the
`users` row when they start (schedule) or are approved (`paused_until`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError

from services.plans import ActionRejected, NoWorkerInTime, PlanService
from storage.bulk_jobs import BulkJob, BulkJobRepository
from telegram_ui.texts import BULK_REPLACED, bulk_progress, bulk_result
from workflows.models import Schedule

log = logging.getLogger("leadpilot.bot")


class TemporalAway(Exception):
    """Temporal can't be reached: leave the job where it is and try again later."""


class BulkRunner:
    CHUNK = 8  # plans changed at once
    INTERVAL = 2.0  # seconds between looks for work when nobody wakes us
    PROGRESS_EVERY = 2.0  # seconds between progress edits of the owner's message

    def __init__(self, plans: PlanService) -> None:
        self.plans = plans
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A job was just recorded: start on it now rather than at the next round."""
        self._wake.set()

    async def _apply(self, job: BulkJob, lead_id: int) -> bool:
        """True if the plan took the change; False if it had nothing to change."""
        plans = self.plans
        try:
            if job.action == "set_schedule":
                schedule = Schedule.model_validate(job.payload["schedule"])
                await plans.set_schedule(lead_id, schedule, patient=True)
            elif job.action == "pause":
                until = job.payload.get("until")
                when = datetime.fromisoformat(until) if until else None
                await plans.pause(lead_id, when, patient=True)
            else:
                await plans.resume(lead_id, patient=True)
        except NoWorkerInTime:
            return True  # admitted; the plan applies it when a worker is back
        except ActionRejected as err:
            if err.unreachable:
                raise TemporalAway(err.reason) from err
            return False  # no open plan, or nothing to change (already paused …)
        return True

    async def process(self, bot: Bot, job: BulkJob) -> None:
        repo = BulkJobRepository(self.plans.pool)
        done, applied, skipped = job.done, job.applied, job.skipped
        total = len(job.lead_ids)
        last_edit = asyncio.get_running_loop().time()
        while done < total:
            chunk = job.lead_ids[done : done + self.CHUNK]
            results = await asyncio.gather(*(self._apply(job, lead) for lead in chunk))
            done += len(chunk)
            applied += sum(results)
            skipped += len(results) - sum(results)
            if not await repo.progress(job.id, done, applied, skipped):
                # Superseded by a newer change of the same kind, which says the rest.
                await self._edit(bot, job, BULK_REPLACED)
                return
            now = asyncio.get_running_loop().time()
            if done < total and now - last_edit >= self.PROGRESS_EVERY:
                last_edit = now
                await self._edit(bot, job, bulk_progress(done, total))
        await repo.finish(job.id)
        span = str(job.payload.get("span", ""))
        await self._edit(bot, job, bulk_result(job.action, applied, span))

    async def _edit(self, bot: Bot, job: BulkJob, status: str) -> None:
        if job.message_id is None:
            return
        head = str(job.payload.get("head", ""))
        text = f"{head}\n{status}" if head else status
        with contextlib.suppress(TelegramAPIError):  # a deleted message is not a failure
            await bot.edit_message_text(
                text=text, chat_id=job.telegram_id, message_id=job.message_id
            )

    async def run_once(self, bot: Bot) -> int:
        """Work through every job that is free now; returns how many finished."""
        repo = BulkJobRepository(self.plans.pool)
        finished = 0
        while (job := await repo.claim()) is not None:
            try:
                await self.process(bot, job)
            except TemporalAway as err:
                log.warning("bulk job %s waits for Temporal: %s", job.id, err)
                return finished  # the lease runs out, then any process retries it
            finished += 1
        return finished

    async def run(self, bot: Bot, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.run_once(bot)
            except Exception:  # the database may be away; try again next round
                log.warning("bulk job round failed", exc_info=True)
            waiters = {
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._wake.wait()),
            }
            await asyncio.wait(waiters, timeout=self.INTERVAL, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
