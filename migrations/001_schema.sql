-- leadpilot schema (SPEC §2): leads, their plan steps, the activity log, users and the
-- Telegram delivery ledger (SPEC §4). Row-level security lives in 002_rls.sql.

-- updated_at follows real changes only: an idempotent retry that writes the same values
-- leaves the row (and its updated_at) as it was.
CREATE FUNCTION leadpilot_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TABLE lead_registry (
    id               bigserial PRIMARY KEY,
    telegram_id      bigint NOT NULL,
    prospect_name    text NOT NULL,
    prospect_company text,
    prospect_title   text,
    original_context text,
    status           text NOT NULL DEFAULT 'analyzed'
        CONSTRAINT lead_registry_status_check CHECK (status IN (
            'analyzed', 'reached_out', 'meeting_booked', 'in_progress',
            'closed_won', 'closed_lost')),
    -- The steps as displayed; written only by a plan_version >= the stored one.
    engagement_plan  jsonb,
    plan_version     int NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lead_registry_owner_created_idx ON lead_registry (telegram_id, created_at DESC);

-- One row per plan step. The first 13 columns are the original design's; plan_version
-- keeps a regenerated plan from colliding with the old rows, revision lets the mirror
-- drop a stale (retried, out-of-order) write.
CREATE TABLE scheduled_reminders (
    id               bigserial PRIMARY KEY,
    lead_id          bigint NOT NULL REFERENCES lead_registry (id) ON DELETE CASCADE,
    telegram_id      bigint NOT NULL,
    step_id          int NOT NULL,
    -- NULL while the plan awaits the owner's approval.
    due_at           timestamptz,
    status           text NOT NULL DEFAULT 'pending'
        CONSTRAINT scheduled_reminders_status_check CHECK (status IN (
            'pending', 'sent', 'completed', 'skipped', 'cancelled')),
    snooze_count     int NOT NULL DEFAULT 0,
    reminder_count   int NOT NULL DEFAULT 0,
    last_reminded_at timestamptz,
    draft_text       text,
    completed_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    plan_version     int NOT NULL DEFAULT 1,
    action_type      text,
    description      text,
    -- Telegram message id of the latest reminder, so it can be edited after an action.
    message_id       bigint,
    revision         bigint NOT NULL DEFAULT 0,
    CONSTRAINT scheduled_reminders_step_key UNIQUE (lead_id, plan_version, step_id)
);
CREATE INDEX scheduled_reminders_due_open_idx ON scheduled_reminders (due_at)
    WHERE status IN ('pending', 'sent');
CREATE INDEX scheduled_reminders_lead_step_idx ON scheduled_reminders (lead_id, step_id);
CREATE INDEX scheduled_reminders_owner_status_idx ON scheduled_reminders (telegram_id, status);

CREATE TABLE lead_activity_log (
    id            bigserial PRIMARY KEY,
    lead_id       bigint NOT NULL REFERENCES lead_registry (id) ON DELETE CASCADE,
    telegram_id   bigint NOT NULL,
    activity_type text NOT NULL,
    content       text,
    metadata      jsonb NOT NULL DEFAULT '{}',
    -- Set by retried writers (activities) so an entry lands once; NULLs never collide.
    dedupe_key    text UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lead_activity_log_lead_created_idx ON lead_activity_log (lead_id, created_at);

CREATE TABLE users (
    telegram_id   bigint PRIMARY KEY,
    first_name    text,
    last_name     text,
    username      text,
    -- IANA name; validated by the application (PostgreSQL can't check it in a CHECK).
    timezone      text NOT NULL DEFAULT 'UTC',
    window_start  time NOT NULL DEFAULT '09:00',
    window_end    time NOT NULL DEFAULT '20:00',
    workdays_only boolean NOT NULL DEFAULT true,
    paused_until  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_window_check CHECK (window_start < window_end)
);

-- The delivery ledger: a row is written ('sending') before a Telegram send and completed
-- ('sent', message_id) after it, so a retried activity that finds 'sent' does not resend.
CREATE TABLE telegram_deliveries (
    id           bigserial PRIMARY KEY,
    delivery_key text NOT NULL UNIQUE,
    lead_id      bigint REFERENCES lead_registry (id) ON DELETE CASCADE,
    telegram_id  bigint NOT NULL,
    status       text NOT NULL
        CONSTRAINT telegram_deliveries_status_check CHECK (status IN ('sending', 'sent')),
    message_id   bigint,
    attempts     int NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telegram_deliveries_lead_idx ON telegram_deliveries (lead_id);

CREATE TRIGGER lead_registry_updated_at BEFORE UPDATE ON lead_registry
    FOR EACH ROW EXECUTE FUNCTION leadpilot_set_updated_at();
CREATE TRIGGER scheduled_reminders_updated_at BEFORE UPDATE ON scheduled_reminders
    FOR EACH ROW EXECUTE FUNCTION leadpilot_set_updated_at();
CREATE TRIGGER users_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION leadpilot_set_updated_at();
CREATE TRIGGER telegram_deliveries_updated_at BEFORE UPDATE ON telegram_deliveries
    FOR EACH ROW EXECUTE FUNCTION leadpilot_set_updated_at();
