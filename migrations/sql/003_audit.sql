-- Indexes for the audit API's filters (docs/audit.md).
--
-- The audit log is the events table seen through a filter, newest first
-- (ORDER BY sequence DESC) with a keyset cursor on sequence. The primary key
-- (ledger_id, sequence) serves the unfiltered list, the cursor and the
-- export. Each index below serves one filter: it leads with the ledger, as
-- every tenant index does, holds the filtered column next, and ends with
-- sequence, so that a filtered page is a backward range scan that stops
-- after limit rows, and a filtered total is an index-only count of the
-- matching entries instead of a visit of the whole ledger.
--
-- Each index costs every append a little (measured in docs/audit.md), so
-- there is one per filter and no more: when several filters are combined,
-- PostgreSQL scans the most selective index and checks the rest on the rows.
--
-- Creating them takes a SHARE lock on events, which makes appends wait
-- while the indexes build (seconds per million events). Run this migration
-- at a quiet moment on a large existing ledger.

-- action = event_type.
CREATE INDEX events_audit_action_idx ON events (ledger_id, event_type, sequence);

-- target_id = stream_id, with or without target_type: a stream's few events
-- are found directly, and stream_type is then checked on them.
CREATE INDEX events_audit_target_idx ON events (ledger_id, stream_id, sequence);

-- target_type alone: five kinds of stream, some rare in a large ledger (an
-- organisation's own events), for which a backward scan of the primary key
-- would read the whole ledger to fill one page.
CREATE INDEX events_audit_target_type_idx ON events (ledger_id, stream_type, sequence);

-- actor_user_id and actor_api_key_id. Events without such an actor (API key
-- actions have no user, most actions no key) are left out; an equality
-- filter implies IS NOT NULL, so PostgreSQL uses the partial index.
CREATE INDEX events_audit_actor_user_idx ON events (ledger_id, actor_user_id, sequence)
    WHERE actor_user_id IS NOT NULL;
CREATE INDEX events_audit_actor_api_key_idx ON events (ledger_id, actor_api_key_id, sequence)
    WHERE actor_api_key_id IS NOT NULL;

-- since and until = occurred_at. occurred_at follows sequence closely, but
-- not exactly (clocks of several replicas), so a time window cannot be
-- turned into a sequence range by arithmetic. This index finds the window's
-- rows, and with sequence in it, the window's count and its first and last
-- sequence come from one index-only scan; the page is then read from the
-- primary key within those bounds (eventstore.ListAudit).
CREATE INDEX events_audit_time_idx ON events (ledger_id, occurred_at, sequence);
