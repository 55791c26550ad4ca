-- Roles, grants and row-level security (SPEC §2).
--
-- `authenticated` is a Mini App user as PostgREST/Supabase/InsForge issue it: it sees and
-- updates only its own rows, identified by the telegram_id claim of the request's JWT.
-- `leadpilot_service` is the named role for the bot and the worker: full access, but
-- through policies that name it (a policy without TO would apply to every role).
--
-- The application itself usually connects as the table owner, and an owner bypasses RLS
-- unless the table is FORCEd; that is intended: the bot and the worker act for all users.
-- A deployment that wants the service under RLS too connects as (or SET ROLE to)
-- leadpilot_service.

-- Roles are cluster-wide, so migrations of several databases on one server (tests, staging
-- next to production) may race to create them; either the check or the handler absorbs it.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['authenticated', 'leadpilot_service'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created concurrently by another session
            END;
        END IF;
    END LOOP;
END
$$;

-- The caller's telegram_id claim, or NULL when there is none. nullif matters: once a
-- session has used set_config(..., true), the setting reads '' afterwards, and ''::jsonb
-- would raise instead of matching nothing.
CREATE FUNCTION leadpilot_request_telegram_id() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT nullif(
        nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'telegram_id',
        ''
    )::bigint
$$;

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO authenticated, leadpilot_service',
                   current_schema());
END
$$;

GRANT SELECT, UPDATE ON lead_registry, scheduled_reminders, users TO authenticated;
GRANT SELECT ON lead_activity_log, telegram_deliveries TO authenticated;

GRANT ALL ON lead_registry, scheduled_reminders, lead_activity_log, users, telegram_deliveries
    TO leadpilot_service;
GRANT ALL ON SEQUENCE lead_registry_id_seq, scheduled_reminders_id_seq,
    lead_activity_log_id_seq, telegram_deliveries_id_seq TO leadpilot_service;

ALTER TABLE lead_registry ENABLE ROW LEVEL SECURITY;
ALTER TABLE scheduled_reminders ENABLE ROW LEVEL SECURITY;
ALTER TABLE lead_activity_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE telegram_deliveries ENABLE ROW LEVEL SECURITY;

-- lead_registry
CREATE POLICY lead_registry_owner_select ON lead_registry FOR SELECT TO authenticated
    USING (telegram_id = leadpilot_request_telegram_id());
CREATE POLICY lead_registry_owner_update ON lead_registry FOR UPDATE TO authenticated
    USING (telegram_id = leadpilot_request_telegram_id())
    WITH CHECK (telegram_id = leadpilot_request_telegram_id());
CREATE POLICY lead_registry_service_all ON lead_registry FOR ALL TO leadpilot_service
    USING (true) WITH CHECK (true);

-- scheduled_reminders: an updated row must stay with the caller and with one of the
-- caller's leads (telegram_id alone would let lead_id point at someone else's lead).
CREATE POLICY scheduled_reminders_owner_select ON scheduled_reminders FOR SELECT
    TO authenticated
    USING (telegram_id = leadpilot_request_telegram_id());
CREATE POLICY scheduled_reminders_owner_update ON scheduled_reminders FOR UPDATE
    TO authenticated
    USING (telegram_id = leadpilot_request_telegram_id())
    WITH CHECK (
        telegram_id = leadpilot_request_telegram_id()
        AND EXISTS (
            SELECT 1 FROM lead_registry l
            WHERE l.id = scheduled_reminders.lead_id
              AND l.telegram_id = leadpilot_request_telegram_id()
        )
    );
CREATE POLICY scheduled_reminders_service_all ON scheduled_reminders FOR ALL
    TO leadpilot_service
    USING (true) WITH CHECK (true);

-- lead_activity_log: read-only for the Mini App.
CREATE POLICY lead_activity_log_owner_select ON lead_activity_log FOR SELECT TO authenticated
    USING (telegram_id = leadpilot_request_telegram_id());
CREATE POLICY lead_activity_log_service_all ON lead_activity_log FOR ALL TO leadpilot_service
    USING (true) WITH CHECK (true);

-- users
CREATE POLICY users_owner_select ON users FOR SELECT TO authenticated
    USING (telegram_id = leadpilot_request_telegram_id());
CREATE POLICY users_owner_update ON users FOR UPDATE TO authenticated
    USING (telegram_id = leadpilot_request_telegram_id())
    WITH CHECK (telegram_id = leadpilot_request_telegram_id());
CREATE POLICY users_service_all ON users FOR ALL TO leadpilot_service
    USING (true) WITH CHECK (true);

-- telegram_deliveries: read-only for the Mini App.
CREATE POLICY telegram_deliveries_owner_select ON telegram_deliveries FOR SELECT
    TO authenticated
    USING (telegram_id = leadpilot_request_telegram_id());
CREATE POLICY telegram_deliveries_service_all ON telegram_deliveries FOR ALL
    TO leadpilot_service
    USING (true) WITH CHECK (true);
