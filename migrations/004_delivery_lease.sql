-- Leased deliveries and per-chat pacing (SPEC §4).
--
-- A delivery is leased before its Telegram call: attempt_id names the attempt that may be
-- sending, lease_expires_at is when that attempt can no longer be in flight (its HTTP
-- timeout plus a margin). Another attempt sends only once the lease is released or
-- expired, so a slow Telegram never gets a second copy while the first may still land.
-- slot_at is the per-chat send slot this delivery holds; sent_at when it went out.
ALTER TABLE telegram_deliveries
    ADD COLUMN attempt_id       text,
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN slot_at          timestamptz,
    ADD COLUMN sent_at          timestamptz;

-- One row per chat: the earliest time the next message to it may go out. Every sender
-- (any worker) reserves a slot with one atomic upsert, so a chat gets at most one message
-- per spacing interval however many reminders fall due together. last_sent_at is claimed
-- right before each HTTP call, so a sender that fell behind its slot cannot crowd the next.
CREATE TABLE chat_send_slots (
    telegram_id  bigint PRIMARY KEY,
    next_free_at timestamptz NOT NULL,
    last_sent_at timestamptz
);

ALTER TABLE chat_send_slots ENABLE ROW LEVEL SECURITY;
GRANT ALL ON chat_send_slots TO leadpilot_service;
CREATE POLICY chat_send_slots_service_all ON chat_send_slots FOR ALL TO leadpilot_service
    USING (true) WITH CHECK (true);
