-- Least privilege for the Mini App's role (issue 8 point 5, issue 11).
--
-- 002 let `authenticated` UPDATE every column of lead_registry, scheduled_reminders and
-- users. A user could then set revision = 9e18 (every later mirror write of their plan
-- became a no-op), plan_version = 2147483647 (the next enrolment overflowed), move a
-- lead's id, or set status = 'closed_won' without stopping the plan. Plan state belongs
-- to the workflow: owner actions reach it as updates/signals through the service, never
-- as a row write. So `authenticated` keeps SELECT (under RLS) and may UPDATE only:
--   users:          its own schedule settings (timezone, window, workdays, vacation pause)
--   lead_registry:  the lead's descriptive text (name, company, title, context), which no
--                   plan state depends on
--   scheduled_reminders: nothing.
-- The owner-scoped RLS policies of 002 still decide which rows; these grants decide which
-- columns.

REVOKE UPDATE ON lead_registry, scheduled_reminders, users FROM authenticated;
REVOKE INSERT, DELETE, TRUNCATE, REFERENCES, TRIGGER
    ON lead_registry, scheduled_reminders, lead_activity_log, users, telegram_deliveries
    FROM authenticated;

GRANT UPDATE (timezone, window_start, window_end, workdays_only, paused_until)
    ON users TO authenticated;
GRANT UPDATE (prospect_name, prospect_company, prospect_title, original_context)
    ON lead_registry TO authenticated;

-- FORCE ROW LEVEL SECURITY: the table owner goes through the policies too, instead of
-- bypassing them. The owner is the role that runs the migrations and, usually, the one the
-- bot and the worker connect as, so it must be covered by a policy first: it becomes a
-- member of leadpilot_service (whose *_service_all policies let it see and write every
-- row, as before) and of authenticated (so the Mini App can SET LOCAL ROLE authenticated
-- on the same connection). A superuser bypasses RLS regardless and needs neither.
--
-- If the migrating role may not grant itself those roles (they were created by someone
-- else without ADMIN OPTION), the tables are left unforced, with a notice: forcing them
-- would lock the bot and the worker out. An administrator completes it by hand:
-- GRANT leadpilot_service, authenticated TO <owner>, then the ALTER TABLE … FORCE below.
DO $$
DECLARE
    is_super boolean;
    table_name text;
BEGIN
    SELECT rolsuper INTO is_super FROM pg_roles WHERE rolname = current_user;
    IF NOT is_super THEN
        BEGIN
            EXECUTE format('GRANT leadpilot_service, authenticated TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
            NULL;  -- checked below
        END;
    END IF;
    IF is_super
       OR (pg_has_role(current_user, 'leadpilot_service', 'USAGE')
           AND pg_has_role(current_user, 'authenticated', 'MEMBER')) THEN
        FOREACH table_name IN ARRAY ARRAY[
            'lead_registry', 'scheduled_reminders', 'lead_activity_log', 'users',
            'telegram_deliveries'
        ] LOOP
            EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', table_name);
        END LOOP;
    ELSE
        RAISE NOTICE 'leadpilot: % is not a member of leadpilot_service and authenticated; '
            'row-level security is not forced for the table owner', current_user;
    END IF;
END
$$;
