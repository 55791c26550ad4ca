"""The Mini App's reads. They run on a connection from webapp.db.as_user, so RLS scopes them.

The owner filter (`telegram_id = $1`) is still written out: it lets PostgreSQL use the
owner indexes, and the tests bypass it on purpose to show RLS alone keeps users apart.
Plan status comes from the mirror, not Temporal (one query for 500 leads): the latest
lifecycle line the workflow logged for the lead's current plan version.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

# Which logged transition leaves a plan in which status (the workflow logs each one).
LIFECYCLE = {
    "plan_created": "awaiting_approval",
    "plan_replaced": "awaiting_approval",
    "plan_approved": "active",
    "plan_resumed": "active",
    "plan_unblocked": "active",
    "plan_paused": "paused",
    "plan_blocked": "blocked",
    "plan_cancelled": "cancelled",
    "plan_completed": "completed",
}
LIFECYCLE_TYPES = list(LIFECYCLE)
OPEN = ("pending", "sent")
MAX_LEADS = 1000
MAX_TODAY = 300

# Each lead's current plan version, its current (first open) step and its last lifecycle line.
_LEAD_PLAN = """
    LEFT JOIN LATERAL (
        SELECT max(r.plan_version) AS version, count(*) AS steps
        FROM scheduled_reminders r
        WHERE r.lead_id = l.id
          AND r.plan_version = (SELECT max(plan_version) FROM scheduled_reminders
                                WHERE lead_id = l.id)
    ) pv ON true
    LEFT JOIN LATERAL (
        SELECT r.step_id, r.due_at, r.status, r.description, r.action_type, r.draft_text,
               r.reminder_count,
               (SELECT count(*) FROM scheduled_reminders p
                 WHERE p.lead_id = l.id AND p.plan_version = pv.version
                   AND p.step_id <= r.step_id) AS position
        FROM scheduled_reminders r
        WHERE r.lead_id = l.id AND r.plan_version = pv.version
          AND r.status IN ('pending', 'sent')
        ORDER BY r.step_id LIMIT 1
    ) cur ON true
    LEFT JOIN LATERAL (
        SELECT a.activity_type FROM lead_activity_log a
        WHERE a.lead_id = l.id AND a.activity_type = ANY($2::text[])
        ORDER BY a.created_at DESC, a.id DESC LIMIT 1
    ) ev ON true
"""


def plan_status(last_event: str | None, steps: int, current_step: int | None) -> str | None:
    """The plan's status from the mirror; None when the lead never had a plan."""
    if last_event is None and not steps:
        return None
    status = LIFECYCLE.get(last_event or "", "active")
    if status in ("active", "paused", "blocked") and steps and current_step is None:
        return "completed"  # every step answered; the completion line may still be on its way
    return status


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _lead_view(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    status = plan_status(row["last_event"], row["steps"] or 0, row["cur_step"])
    running = status in ("active", "paused", "blocked")
    due = row["cur_due"] if running else None
    return {
        "id": row["id"],
        "name": row["prospect_name"],
        "company": row["prospect_company"],
        "title": row["prospect_title"],
        "status": row["status"],
        "plan_status": status,
        "plan_version": row["version"],
        "steps": row["steps"] or 0,
        "next_step": None
        if not running or row["cur_step"] is None
        else {
            "step_id": row["cur_step"],
            "position": row["cur_position"],
            "description": row["cur_description"],
            "action_type": row["cur_action"],
            "due_at": _iso(due),
            "status": row["cur_status"],
        },
        "overdue": bool(
            running
            and status == "active"
            and due is not None
            and (row["cur_status"] == "sent" or due < now)
        ),
    }


_PIPELINE = f"""
SELECT l.id, l.prospect_name, l.prospect_company, l.prospect_title, l.status,
       l.created_at, pv.version, pv.steps, cur.step_id AS cur_step, cur.due_at AS cur_due,
       cur.status AS cur_status, cur.description AS cur_description,
       cur.action_type AS cur_action, cur.position AS cur_position,
       ev.activity_type AS last_event
FROM lead_registry l
{_LEAD_PLAN}
WHERE ($1::bigint IS NULL OR l.telegram_id = $1)
  AND ($3::text = '' OR l.prospect_name ILIKE $3 OR l.prospect_company ILIKE $3)
  AND ($5::bigint IS NULL OR l.id = $5)
ORDER BY l.created_at DESC, l.id DESC
LIMIT $4
"""


def _like(search: str) -> str:
    if not search:
        return ""
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def pipeline(
    conn: asyncpg.Connection, owner: int | None, now: datetime, search: str = ""
) -> list[dict[str, Any]]:
    """Every lead (newest first) with status, plan status, next step and ❗ overdue.

    `owner=None` drops the application's filter (tests: RLS must still hold).
    """
    rows = await conn.fetch(
        _PIPELINE, owner, LIFECYCLE_TYPES, _like(search.strip()[:100]), MAX_LEADS, None
    )
    return [_lead_view(r, now) for r in rows]


async def lead(
    conn: asyncpg.Connection, owner: int | None, lead_id: int, now: datetime
) -> dict[str, Any] | None:
    """One lead with its timeline (all steps of the current plan) and activity log."""
    rows = await conn.fetch(_PIPELINE, owner, LIFECYCLE_TYPES, "", 1, lead_id)
    if not rows:
        return None
    view = _lead_view(rows[0], now)
    extra = await conn.fetchrow("SELECT original_context FROM lead_registry WHERE id = $1", lead_id)
    view["context"] = extra["original_context"] if extra else None
    steps = await conn.fetch(
        """
        SELECT step_id, action_type, description, draft_text, due_at, status,
               reminder_count, snooze_count, completed_at
        FROM scheduled_reminders
        WHERE lead_id = $1 AND plan_version = $2 AND ($3::bigint IS NULL OR telegram_id = $3)
        ORDER BY step_id
        """,
        lead_id,
        view["plan_version"] or 0,
        owner,
    )
    view["timeline"] = [
        {
            "step_id": s["step_id"],
            "position": i,
            "action_type": s["action_type"],
            "description": s["description"],
            "draft": s["draft_text"] or "",
            "due_at": _iso(s["due_at"]),
            "status": s["status"],
            "reminder_count": s["reminder_count"],
            "snooze_count": s["snooze_count"],
            "completed_at": _iso(s["completed_at"]),
            "current": s["step_id"] == (view["next_step"] or {}).get("step_id"),
        }
        for i, s in enumerate(steps, 1)
    ]
    log = await conn.fetch(
        """
        SELECT activity_type, content, created_at FROM lead_activity_log
        WHERE lead_id = $1 AND ($2::bigint IS NULL OR telegram_id = $2)
        ORDER BY created_at DESC, id DESC LIMIT 50
        """,
        lead_id,
        owner,
    )
    view["activity"] = [
        {"type": a["activity_type"], "content": a["content"], "at": _iso(a["created_at"])}
        for a in log
    ]
    return view


async def today(
    conn: asyncpg.Connection, owner: int | None, now: datetime, horizon: timedelta
) -> list[dict[str, Any]]:
    """Overdue and due-within-`horizon` current steps of running plans, soonest first."""
    rows = await conn.fetch(
        f"""
        SELECT l.id, l.prospect_name, l.prospect_company, l.prospect_title, l.status,
               l.created_at, pv.version, pv.steps, cur.step_id AS cur_step,
               cur.due_at AS cur_due, cur.status AS cur_status,
               cur.description AS cur_description, cur.action_type AS cur_action,
               cur.position AS cur_position, cur.draft_text AS cur_draft,
               cur.reminder_count AS cur_reminders, ev.activity_type AS last_event
        FROM lead_registry l
        {_LEAD_PLAN}
        WHERE ($1::bigint IS NULL OR l.telegram_id = $1)
          AND l.status NOT IN ('closed_won', 'closed_lost')
          AND cur.due_at IS NOT NULL AND (cur.status = 'sent' OR cur.due_at <= $3)
          -- only leads with an open step at all (a cheap pre-filter on the owner index)
          AND EXISTS (SELECT 1 FROM scheduled_reminders o
                      WHERE o.lead_id = l.id AND o.status IN ('pending', 'sent')
                        AND ($1::bigint IS NULL OR o.telegram_id = $1))
        ORDER BY cur.due_at, l.id
        LIMIT $4
        """,
        owner,
        LIFECYCLE_TYPES,
        now + horizon,
        MAX_TODAY,
    )
    items = []
    for row in rows:
        view = _lead_view(row, now)
        if view["plan_status"] != "active" or view["next_step"] is None:
            continue
        items.append(
            {
                "lead_id": row["id"],
                "name": row["prospect_name"],
                "company": row["prospect_company"],
                "plan_version": row["version"],
                "step_id": row["cur_step"],
                "position": row["cur_position"],
                "total": row["steps"],
                "action_type": row["cur_action"],
                "description": row["cur_description"],
                "draft": row["cur_draft"] or "",
                "due_at": _iso(row["cur_due"]),
                "status": row["cur_status"],
                "reminder_count": row["cur_reminders"],
                "overdue": view["overdue"],
            }
        )
    return items


async def settings(conn: asyncpg.Connection, owner: int | None) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """
        SELECT telegram_id, first_name, timezone, window_start, window_end, workdays_only,
               paused_until
        FROM users WHERE ($1::bigint IS NULL OR telegram_id = $1)
        ORDER BY telegram_id LIMIT 1
        """,
        owner,
    )
    if row is None:
        return None
    return {
        "telegram_id": row["telegram_id"],
        "first_name": row["first_name"],
        "timezone": row["timezone"],
        "window_start": row["window_start"].strftime("%H:%M"),
        "window_end": row["window_end"].strftime("%H:%M"),
        "workdays_only": row["workdays_only"],
        "paused_until": _iso(row["paused_until"]),
    }
