-- The write of one orchestration decision in ONE statement: the events appended, the new commands
-- (ready, or leased at once to the worker whose report produced them), the outcomes marked recorded
-- and the execution projection moved forward, plus one notification per pool with ready commands.
-- Rows arrive as JSON record sets (one JSON text per table: cheaper to build and send than one
-- array parameter per column). The caller holds the execution's lock (executions.lock).

-- name: write
WITH appended AS (
    INSERT INTO noetl.event (execution_id, event_id, event_type, step, command_id, data, at)
    SELECT %(execution_id)s, e.event_id, e.event_type, e.step, e.command_id, e.data, e.at
    FROM json_to_recordset(%(events)s::json)
        AS e(event_id bigint, event_type text, step text, command_id text, data json, at float8)
    RETURNING 1
), enqueued AS (
    INSERT INTO noetl.command
        (command_id, execution_id, catalog_id, step, idx, pool, priority, max_attempts, context,
         concurrency_key, needs, status, worker_id, attempt, lease_until)
    SELECT c.command_id, %(execution_id)s, c.catalog_id, c.step, c.idx, c.pool, c.priority, c.max_attempts,
           c.context, c.concurrency_key, c.needs,
           CASE WHEN c.leased THEN 'leased' ELSE 'ready' END,
           CASE WHEN c.leased THEN %(worker_id)s::text END,
           CASE WHEN c.leased THEN 1 ELSE 0 END,
           CASE WHEN c.leased THEN now() + make_interval(secs => %(lease_seconds)s::float8) END
    FROM json_to_recordset(%(commands)s::json)
        AS c(n integer, command_id text, catalog_id bigint, step text, idx integer, pool text,
             priority integer, max_attempts integer, context json, leased boolean,
             concurrency_key text, needs jsonb)
    ORDER BY c.n
    RETURNING pool, status
), recorded AS (
    UPDATE noetl.command SET recorded = true, outcome = NULL
    WHERE command_id = ANY(%(recorded)s::text[]) AND status IN ('done', 'failed') AND NOT recorded
    RETURNING 1
), moved AS (
    UPDATE noetl.execution
    SET status = %(status)s,
        last_event_id = %(last_event_id)s,
        result = CASE WHEN %(set_result)s::boolean THEN %(result)s::json ELSE result END,
        error = CASE WHEN %(set_error)s::boolean THEN %(error)s::json ELSE error END,
        updated_at = now(),
        completed_at = CASE WHEN %(status)s = 'RUNNING' THEN NULL ELSE coalesce(completed_at, now()) END
    WHERE execution_id = %(execution_id)s
    RETURNING 1
)
SELECT pg_notify('noetl_commands', pool)
FROM (SELECT DISTINCT pool FROM enqueued WHERE status = 'ready') AS ready

-- name: open
-- The start of a pass, in one statement: a lock without waiting on each wanted execution that is
-- RUNNING, the reports of a worker (none for the server's passes) - recorded at once for the
-- locked executions, as the caller records them in this transaction, and kept (outcome, not
-- recorded) for the others - and the outcomes already waiting for the locked executions. The
-- reports are not among those (the statement's snapshot predates them): the caller has them.
-- One row of four JSON arrays.
WITH locked AS (
    SELECT execution_id, catalog_id, path, status, parent_execution_id, last_event_id,
           cancel_requested, cancel_reason
    FROM noetl.execution
    WHERE execution_id = ANY(%(execution_ids)s::bigint[]) AND status = 'RUNNING'
    ORDER BY execution_id
    FOR UPDATE SKIP LOCKED
), reported AS (
    UPDATE noetl.command AS c
    SET status = CASE WHEN r.ok THEN 'done' ELSE 'failed' END,
        outcome = CASE WHEN c.execution_id IN (SELECT execution_id FROM locked) THEN NULL ELSE r.outcome END,
        recorded = c.execution_id IN (SELECT execution_id FROM locked),
        context = '{}'::json, lease_until = NULL, updated_at = now()
    FROM json_to_recordset(%(reports)s::json)
        AS r(worker_id text, command_id text, attempt integer, ok boolean, outcome json)
    WHERE c.command_id = r.command_id AND c.status = 'leased' AND c.worker_id = r.worker_id
      AND c.attempt = r.attempt
    RETURNING c.command_id
), waiting AS (
    SELECT execution_id, command_id, status, outcome, updated_at, seq FROM noetl.command
    WHERE execution_id IN (SELECT execution_id FROM locked) AND status IN ('done', 'failed')
      AND NOT recorded
)
SELECT
    (SELECT coalesce(jsonb_agg(command_id), '[]') FROM reported) AS accepted,
    (SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.execution_id), '[]') FROM locked AS l) AS locked,
    (SELECT coalesce(json_agg(json_build_array(execution_id, command_id, status, outcome)
                             ORDER BY execution_id, updated_at, seq), '[]') FROM waiting) AS waiting,
    -- RUNNING executions another transaction holds (worth retrying); those that are not RUNNING any
    -- more (finished or cancelled) are neither locked nor busy: nothing is left to record for them.
    (SELECT coalesce(jsonb_agg(e.execution_id), '[]') FROM noetl.execution AS e
     WHERE e.execution_id = ANY(%(execution_ids)s::bigint[]) AND e.status = 'RUNNING'
       AND e.execution_id NOT IN (SELECT execution_id FROM locked)) AS busy
