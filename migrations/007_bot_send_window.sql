-- Bot-wide flood control (issue 9): Telegram allows a bot ~30 messages per second in all.
-- The task queue's rate limit spaces the sends' *starts*, but its token bucket lets a
-- burst through and a slow send can land beside the next ones. Each row is one place in
-- a sliding one-second window: a sender takes a row whose previous message ended at least
-- a second ago, marks it busy while its HTTP call runs and then records when it ended, so
-- with N rows in use no second ever holds more than N messages, from any process.
CREATE TABLE bot_send_window (
    slot       int PRIMARY KEY CHECK (slot >= 0),
    busy_until timestamptz NOT NULL DEFAULT '-infinity'
);

INSERT INTO bot_send_window (slot) SELECT generate_series(0, 99);

ALTER TABLE bot_send_window ENABLE ROW LEVEL SECURITY;
GRANT ALL ON bot_send_window TO leadpilot_service;
CREATE POLICY bot_send_window_service_all ON bot_send_window FOR ALL TO leadpilot_service
    USING (true) WITH CHECK (true);
