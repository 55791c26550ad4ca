"""The write API for one lead: a step, the plan, the status (through the plan workflow)."""

from __future__ import annotations

import logging

from aiogram.exceptions import TelegramAPIError
from aiohttp import web
from temporalio.service import RPCError

from services.plans import ActionRejected
from storage.deliveries import StepRef
from storage.models import Lead, LeadStatus
from storage.users import UserRepository
from telegram_ui.stale_buttons import clear_stale_buttons
from telegram_ui.texts import (
    APP_DRAFTING,
    APP_UNREACHABLE,
    PAUSED,
    RESUMED,
    STOPPED,
    STOPPED_NO_MORE,
    already_handled,
    reminder_outcome,
    status_changed,
    step_done,
    step_skipped,
    step_snoozed,
)
from webapp.http import USER_KEY, error, int_id, json_body, refusal
from webapp.reads import Reads
from workflows.models import TERMINAL_PLAN_STATUSES, PlanState

log = logging.getLogger("leadpilot.webapp")


class Writes(Reads):
    async def step(self, request: web.Request) -> web.Response:
        lead = await self.owned_lead(request)
        body = await json_body(request)
        step_id = int_id(body.get("step_id"), "step_id")
        version = int_id(body.get("plan_version"), "plan_version")
        action = body.get("action")
        plans = self.plans
        new_state: PlanState
        try:
            if action == "done":
                new_state = await plans.complete(lead.id, version, step_id)
                outcome, answer = step_done()
            elif action == "skip":
                new_state = await plans.skip(lead.id, version, step_id)
                outcome, answer = step_skipped()
            elif action in ("snooze1", "snooze3"):
                days = 1 if action == "snooze1" else 3
                new_state = await plans.snooze(lead.id, version, step_id, days)
                outcome, answer = step_snoozed(days)
            elif action == "stop":
                return await self._stop(lead, step_id)
            else:
                raise error(400, "action must be done, skip, snooze1, snooze3 or stop")
        except ActionRejected as err:
            raise refusal(err) from None
        await self._edit_reminder(lead, new_state, step_id, outcome)
        return web.json_response({"message": answer})

    async def _stop(self, lead: Lead, step_id: int | None) -> web.Response:
        state = await self.plans.state(lead.id)
        if state is None or state.status in TERMINAL_PLAN_STATUSES:
            status = state.status.value if state else "finished"
            raise error(409, already_handled(status), already_handled=True)
        try:
            await self.plans.cancel(lead.id, "stopped from the Mini App")
        except RPCError:
            raise error(503, APP_UNREACHABLE) from None
        if step_id is not None:
            await self._edit_reminder(lead, state, step_id, STOPPED_NO_MORE, show_next=False)
        return web.json_response({"message": STOPPED})

    async def _edit_reminder(
        self, lead: Lead, state: PlanState, step_id: int, outcome: str, *, show_next: bool = True
    ) -> None:
        """The chat's reminder says what happened, as after a tap in the chat."""
        step = state.step(step_id)
        if step is None or step.message_id is None:
            return
        text = reminder_outcome(lead, state, step_id, outcome, show_next=show_next)
        try:
            await self.bot.edit_message_text(
                text=text, chat_id=lead.telegram_id, message_id=step.message_id
            )
        except (TimeoutError, TelegramAPIError, OSError) as err:
            # Gone, too old or unchanged: the action itself stands.
            log.info("reminder %s of lead %s not edited: %s", step.message_id, lead.id, err)
        try:  # the step's older reminders (earlier rounds, nudges) stop inviting taps too
            await clear_stale_buttons(
                self.bot,
                self.pool,
                StepRef(lead.id, state.plan_version, step_id),
                edited_message_id=step.message_id,
            )
        except Exception as err:  # cosmetic (database or Telegram away): the answer stands
            log.info("stale buttons of lead %s not cleared: %r", lead.id, err)

    async def plan(self, request: web.Request) -> web.Response:
        lead = await self.owned_lead(request)
        action = (await json_body(request)).get("action")
        plans = self.plans
        try:
            if action == "pause":
                await plans.pause(lead.id)
                return web.json_response({"message": PAUSED})
            if action == "resume":
                await plans.resume(lead.id)
                return web.json_response({"message": RESUMED})
            if action == "stop":
                return await self._stop(lead, None)
            if action == "regenerate":
                current = await plans.state(lead.id)
                if current is None or current.status in TERMINAL_PLAN_STATUSES:
                    # Nothing open: a fresh plan, whose draft arrives in the chat.
                    user = await UserRepository(self.pool).get(request[USER_KEY])
                    try:
                        await plans.start(lead, user)
                    except RPCError:
                        raise error(503, APP_UNREACHABLE) from None
                else:
                    await plans.regenerate(lead)
                return web.json_response({"message": APP_DRAFTING})
        except ActionRejected as err:
            raise refusal(err) from None
        raise error(400, "action must be pause, resume, stop or regenerate")

    async def status(self, request: web.Request) -> web.Response:
        """One atomic status change, logged; closing a lead stops its plan (cancel signal)."""
        owner = request[USER_KEY]
        lead = await self.owned_lead(request)
        try:
            status = LeadStatus(str((await json_body(request)).get("status")))
        except ValueError:
            raise error(400, "unknown status") from None
        # Through the service, owner-checked in the statement: `authenticated` may not
        # write a status, because closing must also stop the plan (durably, as in the chat).
        change = await self.plans.close_lead(lead.id, owner, status)
        if change is None:
            raise error(404, "no such lead")
        previous, updated, stopped = change
        message = status_changed(previous, updated.status, stopped=stopped, chat=False)
        return web.json_response({"message": message})
