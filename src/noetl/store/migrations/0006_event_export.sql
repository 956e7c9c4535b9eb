-- Exporters read the event log in commit order, after a durable cursor of their own.
--
-- Event ids are per execution, so the log has no global order by itself. `tx` is the id of the
-- transaction that wrote the row: an exporter reads only rows whose transaction is older than every
-- transaction of this database still running, so no row can later appear behind its cursor, and
-- orders by (tx, execution_id, event_id), which never changes once a row is visible.
ALTER TABLE noetl.event ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX event_export_idx ON noetl.event (tx, execution_id, event_id);

-- One row per export sink: the last event it has (at least once), and how it is doing.
CREATE TABLE noetl.export_cursor (
    sink text PRIMARY KEY,
    tx xid8 NOT NULL DEFAULT '0',
    execution_id bigint NOT NULL DEFAULT 0,
    event_id bigint NOT NULL DEFAULT 0,
    exported bigint NOT NULL DEFAULT 0,             -- events delivered so far (re-deliveries count)
    last_error text,                                -- the last failure, until a batch succeeds
    updated_at timestamptz NOT NULL DEFAULT now()
);
