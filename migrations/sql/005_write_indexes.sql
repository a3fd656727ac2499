-- Fewer indexes for every write to maintain (docs/performance.md lists each
-- remaining index with the query it serves; TestEveryIndexServesAQuery
-- checks them).

-- sort_by=status orders by (status, created_at, id), the order of
-- projects_status_created_idx, which the status filter needs anyway.
DROP INDEX projects_status_idx;

-- The stream-version guard leads with the stream's ID, so that the same
-- unique index finds a stream's few events for the audit target_id filter;
-- the index of its own that filter had is dropped. Building the new index
-- takes a SHARE lock on events (appends wait, seconds per million events):
-- run this migration at a quiet moment on a large existing ledger.
CREATE UNIQUE INDEX events_stream_key ON events (stream_id, stream_type, stream_version);
ALTER TABLE events DROP CONSTRAINT events_stream_type_stream_id_stream_version_key;
ALTER TABLE events ADD CONSTRAINT events_stream_key UNIQUE USING INDEX events_stream_key;
DROP INDEX events_audit_target_idx;

-- One index for a membership by its user: the uniqueness of a user's
-- membership in an organisation, the gate's role lookup (both columns
-- given) and the organisations of a user (user_id leading) are served by
-- the same index.
CREATE UNIQUE INDEX memberships_user_organisation_key ON memberships (user_id, organisation_id);
DROP INDEX memberships_organisation_user_key;
DROP INDEX memberships_user_idx;
