-- name: ensure
-- A sink's cursor row, created at the start of the log the first time the sink is seen.
INSERT INTO noetl.export_cursor (sink) VALUES (%(sink)s) ON CONFLICT (sink) DO NOTHING

-- name: cursor
SELECT sink, tx::text AS tx, execution_id, event_id, exported, last_error, updated_at
FROM noetl.export_cursor WHERE sink = %(sink)s

-- name: cursors
SELECT sink, tx::text AS tx, execution_id, event_id, exported, last_error, updated_at
FROM noetl.export_cursor ORDER BY sink

-- name: batch
-- The next events after the cursor, in commit order, only from transactions that have ended (a row
-- of a transaction still running could otherwise become visible behind the cursor later).
-- Joined with what an export row carries besides the event: the playbook path and the command's
-- pool, worker and attempt. With `since`, only events written at or after it (a backfill's pages).
-- The horizon is the oldest transaction of this database still running when the statement's
-- snapshot was taken (transactions of other databases cannot write here and do not hold it back);
-- with none running, the next transaction id. Every row older than it is visible or gone for good.
WITH horizon AS (
    SELECT coalesce(
        (SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
         WHERE (x::text::numeric %% 4294967296)::text NOT IN (
             SELECT backend_xid::text FROM pg_stat_activity
             WHERE datname IS DISTINCT FROM current_database() AND backend_xid IS NOT NULL)),
        pg_snapshot_xmax(pg_current_snapshot())) AS h
)
SELECT e.tx::text AS tx, e.execution_id, e.event_id, e.event_type, e.step, e.command_id, e.data::text AS data,
       e.at, e.created_at, x.path, x.catalog_id, x.parent_execution_id,
       c.pool, c.worker_id, c.attempt
FROM noetl.event e
JOIN noetl.execution x ON x.execution_id = e.execution_id
LEFT JOIN noetl.command c ON c.command_id = e.command_id
WHERE (e.tx, e.execution_id, e.event_id) > (%(tx)s::xid8, %(execution_id)s, %(event_id)s)
  AND e.tx < (SELECT h FROM horizon)
  AND (%(since)s::timestamptz IS NULL OR e.created_at >= %(since)s)
ORDER BY e.tx, e.execution_id, e.event_id
LIMIT %(limit)s

-- name: advance
INSERT INTO noetl.export_cursor AS c (sink, tx, execution_id, event_id, exported)
VALUES (%(sink)s, %(tx)s::xid8, %(execution_id)s, %(event_id)s, %(count)s)
ON CONFLICT (sink) DO UPDATE
SET tx = excluded.tx, execution_id = excluded.execution_id, event_id = excluded.event_id,
    exported = c.exported + excluded.exported, last_error = NULL, updated_at = now()

-- name: failed
UPDATE noetl.export_cursor SET last_error = %(error)s, updated_at = now() WHERE sink = %(sink)s

-- name: lag
-- How far a sink is behind: events after its cursor (counted up to a cap) and the oldest one's age.
SELECT count(*) AS events, extract(epoch FROM now() - min(created_at)) AS seconds
FROM (
    SELECT e.created_at FROM noetl.event e
    WHERE (e.tx, e.execution_id, e.event_id) > (%(tx)s::xid8, %(execution_id)s, %(event_id)s)
    ORDER BY e.tx, e.execution_id, e.event_id
    LIMIT %(cap)s
) behind

-- name: step_stats
-- Per-step call durations, failures and retries of a playbook's executions since a time.
SELECT e.step,
       count(*) AS calls,
       count(*) FILTER (WHERE e.event_type = 'call.error') AS failures,
       coalesce(sum(greatest(coalesce((e.data->>'attempts')::int, 1) - 1, 0)), 0) AS retries,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (e.data->>'duration_ms')::float8) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY (e.data->>'duration_ms')::float8) AS p95_ms,
       max((e.data->>'duration_ms')::float8) AS max_ms
FROM noetl.execution x
JOIN noetl.event e ON e.execution_id = x.execution_id
WHERE x.path = %(path)s AND x.created_at >= %(since)s
  AND e.event_type IN ('call.done', 'call.error')
GROUP BY e.step
ORDER BY e.step

-- name: execution_stats
SELECT count(*) AS executions,
       count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       count(*) FILTER (WHERE status = 'CANCELLED') AS cancelled,
       count(*) FILTER (WHERE status = 'RUNNING') AS running
FROM noetl.execution WHERE path = %(path)s AND created_at >= %(since)s

-- name: execution_info
SELECT execution_id, path, catalog_id, parent_execution_id, parent_key
FROM noetl.execution WHERE execution_id = %(execution_id)s

-- name: trace_root
-- The root of an execution's sub-playbook chain and the trace id its execute request carried.
WITH RECURSIVE up (execution_id, parent_execution_id, depth) AS (
    SELECT execution_id, parent_execution_id, 0 FROM noetl.execution WHERE execution_id = %(execution_id)s
    UNION ALL
    SELECT x.execution_id, x.parent_execution_id, up.depth + 1
    FROM noetl.execution x JOIN up ON x.execution_id = up.parent_execution_id
    WHERE up.depth < 64
)
SELECT up.execution_id,
       (SELECT e.data -> 'trace' ->> 'trace_id' FROM noetl.event e
        WHERE e.execution_id = up.execution_id AND e.event_id = 1) AS trace_id
FROM up WHERE up.parent_execution_id IS NULL

-- name: command_rows
SELECT command_id, pool, worker_id, attempt FROM noetl.command WHERE command_id = ANY(%(command_ids)s)
