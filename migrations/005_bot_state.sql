-- The bot's own durable state (issue 10), so bot processes are stateless and any number
-- of replicas (webhook mode behind a load balancer) can serve one user.

-- aiogram FSM (dialog) state: one row per aiogram StorageKey. A restart or another
-- replica continues a half-finished /add from here.
CREATE TABLE bot_fsm_state (
    bot_id                 bigint NOT NULL,
    chat_id                bigint NOT NULL,
    user_id                bigint NOT NULL,
    thread_id              bigint NOT NULL DEFAULT 0,
    business_connection_id text NOT NULL DEFAULT '',
    destiny                text NOT NULL DEFAULT 'default',
    state                  text,
    data                   jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, chat_id, user_id, thread_id, business_connection_id, destiny)
);

-- A closed lead's `cancel` signal that has not reached its plan yet (Temporal was
-- unreachable when the owner closed it). The bot retries until the signal is delivered,
-- then deletes the row; a reopened lead drops its row.
CREATE TABLE plan_cancel_outbox (
    lead_id         bigint PRIMARY KEY REFERENCES lead_registry (id) ON DELETE CASCADE,
    telegram_id     bigint NOT NULL,
    reason          text NOT NULL,
    attempts        int NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plan_cancel_outbox_due_idx ON plan_cancel_outbox (next_attempt_at);

-- A change to all of an owner's plans (/timezone, /window, /workdays, /pause, /resume)
-- runs as a background job, off the tap path: the leads to touch are fixed when it is
-- created, `done` counts how many were handled, so a bot restart resumes where it
-- stopped. Any bot replica may run it (a lease keeps two from running one job at once).
-- A newer job of the same group (schedule, or vacation) supersedes a running one.
CREATE TABLE bot_bulk_jobs (
    id          bigserial PRIMARY KEY,
    telegram_id bigint NOT NULL,
    action      text NOT NULL CONSTRAINT bot_bulk_jobs_action_check
                    CHECK (action IN ('set_schedule', 'pause', 'resume')),
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
    lead_ids    bigint[] NOT NULL,
    done        int NOT NULL DEFAULT 0,
    applied     int NOT NULL DEFAULT 0,
    skipped     int NOT NULL DEFAULT 0,
    message_id  bigint,
    status      text NOT NULL DEFAULT 'running' CONSTRAINT bot_bulk_jobs_status_check
                    CHECK (status IN ('running', 'done', 'superseded')),
    lease_until timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bot_bulk_jobs_running_idx ON bot_bulk_jobs (created_at) WHERE status = 'running';
CREATE TRIGGER bot_bulk_jobs_updated_at BEFORE UPDATE ON bot_bulk_jobs
    FOR EACH ROW EXECUTE FUNCTION leadpilot_set_updated_at();

-- Service-only tables: the Mini App role gets no grant and no policy.
GRANT ALL ON bot_fsm_state, plan_cancel_outbox, bot_bulk_jobs TO leadpilot_service;
GRANT ALL ON SEQUENCE bot_bulk_jobs_id_seq TO leadpilot_service;
ALTER TABLE bot_fsm_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE plan_cancel_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE bot_bulk_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY bot_fsm_state_service_all ON bot_fsm_state FOR ALL TO leadpilot_service
    USING (true) WITH CHECK (true);
CREATE POLICY plan_cancel_outbox_service_all ON plan_cancel_outbox FOR ALL
    TO leadpilot_service
    USING (true) WITH CHECK (true);
CREATE POLICY bot_bulk_jobs_service_all ON bot_bulk_jobs FOR ALL TO leadpilot_service
    USING (true) WITH CHECK (true);
