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

-- Service-only tables: the Mini App role gets no grant and no policy.
GRANT ALL ON bot_fsm_state, plan_cancel_outbox TO leadpilot_service;
ALTER TABLE bot_fsm_state ENABLE ROW LEVEL SECURITY;
ALTER TABLE plan_cancel_outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY bot_fsm_state_service_all ON bot_fsm_state FOR ALL TO leadpilot_service
    USING (true) WITH CHECK (true);
CREATE POLICY plan_cancel_outbox_service_all ON plan_cancel_outbox FOR ALL
    TO leadpilot_service
    USING (true) WITH CHECK (true);
