"""The PostgreSQL mirror of a plan: scheduled_reminders rows, the displayed plan, the log."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from storage.activity_log import ActivityLogRepository
from storage.leads import LeadRepository
from storage.models import ReminderStatus, ReminderUpsert
from storage.reminders import ReminderRepository
from workflows.models import LogEntry, MirrorRequest, PlanState


def state_rows(state: PlanState) -> list[ReminderUpsert]:
    """Every step of the plan as a scheduled_reminders row, stamped with the plan's revision."""
    return [
        ReminderUpsert(
            lead_id=state.lead_id,
            telegram_id=state.telegram_id,
            plan_version=state.plan_version,
            step_id=step.step_id,
            action_type=step.action_type,
            description=step.description,
            draft_text=step.suggested_text,
            due_at=step.due_at,
            status=ReminderStatus(step.status.value),
            snooze_count=step.snooze_count,
            reminder_count=step.reminder_count,
            last_reminded_at=step.last_reminded_at,
            completed_at=step.completed_at,
            message_id=step.message_id,
            revision=state.revision,
        )
        for step in state.steps
    ]


async def write_log(
    db: asyncpg.Connection | asyncpg.Pool, state: PlanState, entries: list[LogEntry]
) -> None:
    log = ActivityLogRepository(db)
    for entry in entries:
        await log.add(
            state.lead_id,
            state.telegram_id,
            entry.activity_type,
            entry.content,
            metadata=dict(entry.metadata),
            dedupe_key=entry.dedupe_key,
        )


class MirrorActivities:
    """Short DB writes, run as local activities so they add no workflow tasks of their own."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="sync_plan")
    async def sync_plan(self, req: MirrorRequest) -> None:
        """Idempotent: rows are upserts guarded by revision, log lines carry a dedupe key."""
        state = req.state
        async with self._pool.acquire() as conn, conn.transaction():
            reminders = ReminderRepository(conn)
            await reminders.upsert_steps(state_rows(state))
            if state.plan_version > 1:  # a lead's first plan has no older rows to close
                await reminders.close_older_versions(
                    state.lead_id, state.plan_version, state.revision
                )
            await LeadRepository(conn).set_engagement_plan(
                state.lead_id,
                state.plan_version,
                [step.model_dump(mode="json") for step in state.steps],
            )
            await write_log(conn, state, req.log)
