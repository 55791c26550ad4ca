-- Stale reminder buttons (issue 10): once a newer reminder for a step is sent or the step
-- is answered, the older messages of that step lose their inline keyboard. A reminder's
-- delivery row names its step, and buttons_cleared_at records that its keyboard is gone
-- (or could not be removed for good: message deleted, too old), so each message is
-- edited once. Notices have no step and are never cleared.
ALTER TABLE telegram_deliveries
    ADD COLUMN plan_version       int,
    ADD COLUMN step_id            int,
    ADD COLUMN buttons_cleared_at timestamptz;

-- Reminders sent before this migration: their key is lead-<id>:v<version>:s<step>:…
UPDATE telegram_deliveries SET
    plan_version = (regexp_match(delivery_key, '^lead-[0-9]+:v([0-9]+):s([0-9]+):'))[1]::int,
    step_id      = (regexp_match(delivery_key, '^lead-[0-9]+:v([0-9]+):s([0-9]+):'))[2]::int
WHERE delivery_key ~ '^lead-[0-9]+:v[0-9]+:s[0-9]+:';

CREATE INDEX telegram_deliveries_live_buttons_idx
    ON telegram_deliveries (lead_id, plan_version, step_id)
    WHERE step_id IS NOT NULL AND buttons_cleared_at IS NULL;
