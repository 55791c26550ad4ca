"""The Mini App's reads. They run on a connection from webapp.db.as_user, so RLS scopes them.

The owner filter (`telegram_id = $1`) is still written out: it lets PostgreSQL use the
owner indexes, and the tests bypass it on purpose to show RLS alone keeps users apart.
Plan status comes from the mirror, not Temporal (one query for 500 leads): the latest
lifecycle line the workflow logged for the lead's current plan version.
"""

from __future__ import annotations

from collections.abc import Mapping
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
MAX_TODAY_SCAN = 5000

# Each query reads one table, and the joining happens in Python: with RLS in the way the
# planner can't estimate row counts, and a joined version of these lists picked per-lead
# nested loops (tens to hundreds of ms for 500 leads). $1 is the owner (NULL drops the
# application's filter; the tests do that to show RLS alone keeps users apart).
_LEADS = """
SELECT id, prospect_name, prospect_company, prospect_title, status, created_at
FROM lead_registry
WHERE ($1::bigint IS NULL OR telegram_id = $1) AND ($2::bigint IS NULL OR id = $2)
  AND ($3::text = '' OR prospect_name ILIKE $3 OR prospect_company ILIKE $3)
ORDER BY created_at DESC, id DESC
LIMIT $4
"""
# Per lead and plan version: step count, the current (first open) step, and how many are
# closed (steps are answered in order, so the current one's position is that + 1).
_PLAN_COUNTS = """
SELECT lead_id, plan_version, count(*) AS steps,
       min(step_id) FILTER (WHERE status IN ('pending', 'sent')) AS cur_step,
       count(*) FILTER (WHERE status NOT IN ('pending', 'sent')) AS closed
FROM scheduled_reminders
WHERE ($1::bigint IS NULL OR telegram_id = $1) AND lead_id = ANY($2::bigint[])
GROUP BY lead_id, plan_version
"""
_OPEN_STEPS = """
SELECT DISTINCT ON (lead_id, plan_version)
       lead_id, plan_version, step_id, due_at, status, description, action_type, draft_text,
       reminder_count
FROM scheduled_reminders
WHERE ($1::bigint IS NULL OR telegram_id = $1) AND lead_id = ANY($2::bigint[])
  AND status IN ('pending', 'sent')
ORDER BY lead_id, plan_version, step_id
"""
_LAST_EVENTS = """
SELECT DISTINCT ON (lead_id) lead_id, activity_type
FROM lead_activity_log
WHERE ($1::bigint IS NULL OR telegram_id = $1) AND lead_id = ANY($2::bigint[])
  AND activity_type = ANY($3::text[])
ORDER BY lead_id, created_at DESC, id DESC
"""


async def _leads_with_plans(
    conn: asyncpg.Connection,
    owner: int | None,
    *,
    lead_id: int | None = None,
    search: str = "",
    limit: int = MAX_LEADS,
) -> list[dict[str, Any]]:
    """Leads (newest first) each with its current plan's summary, as flat dicts."""
    leads = await conn.fetch(_LEADS, owner, lead_id, search, limit)
    ids = [lead["id"] for lead in leads]
    if not ids:
        return []
    plans: dict[int, asyncpg.Record] = {}
    for row in await conn.fetch(_PLAN_COUNTS, owner, ids):
        kept = plans.get(row["lead_id"])
        if kept is None or row["plan_version"] > kept["plan_version"]:
            plans[row["lead_id"]] = row
    open_steps = {
        (r["lead_id"], r["plan_version"]): r for r in await conn.fetch(_OPEN_STEPS, owner, ids)
    }
    events = {
        r["lead_id"]: r["activity_type"]
        for r in await conn.fetch(_LAST_EVENTS, owner, ids, LIFECYCLE_TYPES)
    }
    out = []
    for lead in leads:
        row = dict(lead)
        plan = plans.get(lead["id"])
        cur = open_steps.get((lead["id"], plan["plan_version"])) if plan else None
        row.update(
            version=plan["plan_version"] if plan else None,
            steps=plan["steps"] if plan else 0,
            cur_step=cur["step_id"] if cur else None,
            cur_due=cur["due_at"] if cur else None,
            cur_status=cur["status"] if cur else None,
            cur_description=cur["description"] if cur else None,
            cur_action=cur["action_type"] if cur else None,
            cur_position=plan["closed"] + 1 if plan and cur else None,
            cur_draft=cur["draft_text"] if cur else None,
            cur_reminders=cur["reminder_count"] if cur else None,
            last_event=events.get(lead["id"]),
        )
        out.append(row)
    return out


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


# A step as the page draws it, from a scheduled_reminders row or from the current-step
# columns of the lead summary (the page's key -> the column).
STEP_COLUMNS = {
    "action_type": "action_type",
    "description": "description",
    "draft": "draft_text",
    "due_at": "due_at",
    "status": "status",
    "reminder_count": "reminder_count",
}
CURRENT_STEP_COLUMNS = {
    "action_type": "cur_action",
    "description": "cur_description",
    "draft": "cur_draft",
    "due_at": "cur_due",
    "status": "cur_status",
    "reminder_count": "cur_reminders",
}


def _step_view(
    step_id: int, position: int, row: Mapping[str, Any], columns: Mapping[str, str]
) -> dict[str, Any]:
    """One step for the page (Today's cards and a lead's timeline draw it the same way)."""
    view = {key: row[column] for key, column in columns.items()}
    view["draft"] = view["draft"] or ""
    view["due_at"] = _iso(view["due_at"])
    return {"step_id": step_id, "position": position, **view}


def _lead_view(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
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
    rows = await _leads_with_plans(conn, owner, search=_like(search.strip()[:100]))
    return [_lead_view(r, now) for r in rows]


async def lead(
    conn: asyncpg.Connection, owner: int | None, lead_id: int, now: datetime
) -> dict[str, Any] | None:
    """One lead with its timeline (all steps of the current plan) and activity log."""
    rows = await _leads_with_plans(conn, owner, lead_id=lead_id, limit=1)
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
    current = (view["next_step"] or {}).get("step_id")
    view["timeline"] = [
        {
            **_step_view(s["step_id"], i, s, STEP_COLUMNS),
            "snooze_count": s["snooze_count"],
            "completed_at": _iso(s["completed_at"]),
            "current": s["step_id"] == current,
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
    # Every lead's summary, filtered and sorted here: a few hundred rows, same reads as the
    # pipeline.
    rows = await _leads_with_plans(conn, owner, limit=MAX_TODAY_SCAN)
    limit = now + horizon
    rows = sorted(
        (
            r
            for r in rows
            if r["status"] not in ("closed_won", "closed_lost")
            and r["cur_due"] is not None
            and (r["cur_status"] == "sent" or r["cur_due"] <= limit)
        ),
        key=lambda r: (r["cur_due"], r["id"]),
    )
    items: list[dict[str, Any]] = []
    for row in rows:
        view = _lead_view(row, now)
        if view["plan_status"] != "active" or view["next_step"] is None:
            continue
        if len(items) == MAX_TODAY:
            break
        items.append(
            {
                "lead_id": row["id"],
                "name": row["prospect_name"],
                "company": row["prospect_company"],
                "plan_version": row["version"],
                **_step_view(row["cur_step"], row["cur_position"], row, CURRENT_STEP_COLUMNS),
                "total": row["steps"],
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
