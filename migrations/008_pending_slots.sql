-- Reminders first at a chat (issue 9): a deferrable send (a nudge, a notice) that is late
-- for its send slot yields its chat to a message whose slot is imminent
-- (storage/pacing.py). The chat's pending deliveries by slot; sent rows are not indexed.
CREATE INDEX telegram_deliveries_pending_slot_idx
    ON telegram_deliveries (telegram_id, slot_at) WHERE status = 'sending';
