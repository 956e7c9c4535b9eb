-- name: candidates
-- Ended executions older than the cutoff whose every event each export sink already has (a sink's
-- cursor is past an execution's events when none of them sorts after it), oldest first.
SELECT x.execution_id
FROM noetl.execution x
WHERE x.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
  AND coalesce(x.completed_at, x.updated_at) < %(cutoff)s
  AND NOT EXISTS (
      SELECT 1 FROM noetl.export_cursor c
      WHERE EXISTS (
          SELECT 1 FROM noetl.event e
          WHERE e.execution_id = x.execution_id
            AND (e.tx, e.execution_id, e.event_id) > (c.tx, c.execution_id, c.event_id)))
  AND x.execution_id > %(after)s
ORDER BY x.execution_id
LIMIT %(limit)s

-- name: held
-- Ended executions older than the cutoff that an export sink has not taken yet.
SELECT count(*) FROM noetl.execution x
WHERE x.status IN ('COMPLETED', 'FAILED', 'CANCELLED')
  AND coalesce(x.completed_at, x.updated_at) < %(cutoff)s
  AND EXISTS (
      SELECT 1 FROM noetl.export_cursor c
      WHERE EXISTS (
          SELECT 1 FROM noetl.event e
          WHERE e.execution_id = x.execution_id
            AND (e.tx, e.execution_id, e.event_id) > (c.tx, c.execution_id, c.event_id)))

-- name: count
SELECT (SELECT count(*) FROM noetl.event WHERE execution_id = ANY(%(ids)s)) AS events,
       (SELECT count(*) FROM noetl.command WHERE execution_id = ANY(%(ids)s)) AS commands,
       (SELECT count(*) FROM noetl.result WHERE execution_id = ANY(%(ids)s)) AS results

-- name: delete
-- One batch, in one statement: the executions' events, commands, stored results and rows.
WITH events AS (DELETE FROM noetl.event WHERE execution_id = ANY(%(ids)s) RETURNING 1),
     commands AS (DELETE FROM noetl.command WHERE execution_id = ANY(%(ids)s) RETURNING 1),
     results AS (DELETE FROM noetl.result WHERE execution_id = ANY(%(ids)s) RETURNING 1),
     executions AS (DELETE FROM noetl.execution WHERE execution_id = ANY(%(ids)s) RETURNING 1)
SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM commands) AS commands,
       (SELECT count(*) FROM results) AS results, (SELECT count(*) FROM executions) AS executions

-- name: sizes
SELECT relname AS "table", pg_total_relation_size(c.oid) AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'noetl' AND relname IN ('event', 'command', 'execution', 'result') ORDER BY relname
