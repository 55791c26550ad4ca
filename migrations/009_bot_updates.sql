-- Telegram updates a bot process finished handling. Webhook mode answers Telegram only
-- once an update is handled, so an update whose replica died mid-way (SIGKILL, OOM, a
-- lost node) is delivered again by Telegram, to any replica. A copy of an update whose
-- handling did finish (only the answer to Telegram was lost) is recognised by its id and
-- skipped. Telegram gives up on an update after 24 hours; older ids are forgotten.
CREATE TABLE bot_updates_handled (
    bot_id     bigint NOT NULL,
    update_id  bigint NOT NULL,
    handled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, update_id)
);
CREATE INDEX bot_updates_handled_at_idx ON bot_updates_handled (handled_at);

-- Service-only, as the bot's other state (005).
GRANT ALL ON bot_updates_handled TO leadpilot_service;
ALTER TABLE bot_updates_handled ENABLE ROW LEVEL SECURITY;
CREATE POLICY bot_updates_handled_service_all ON bot_updates_handled FOR ALL
    TO leadpilot_service
    USING (true) WITH CHECK (true);
