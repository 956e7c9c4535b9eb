-- The command queue. Every statement here is one round trip and commits atomically on its own;
-- notifications ride in the same statement, so they go out exactly when the change commits
-- (PostgreSQL folds identical notifications of one transaction into one).
--
-- claim, heartbeat and release commit without waiting for the WAL flush (synchronous_commit off
-- for their own transaction only, via set_config(..., true)). Losing one in a database crash is
-- safe: a lost claim or heartbeat makes the command run again (at-least-once), and a report cannot
-- outlive its claim, because the report's durable commit flushes the WAL written before it.
-- Reports, inserts and the reaper's failures stay durable.

-- name: insert
WITH inserted AS (
    INSERT INTO noetl.command
        (command_id, execution_id, catalog_id, step, idx, pool, priority, max_attempts, context,
         concurrency_key, needs)
    SELECT c.command_id, c.execution_id, c.catalog_id, c.step, c.idx, c.pool, c.priority, c.max_attempts, c.context,
           c.concurrency_key, c.needs
    FROM unnest(%(command_ids)s::text[], %(execution_ids)s::bigint[], %(catalog_ids)s::bigint[],
                %(steps)s::text[], %(idx)s::integer[], %(pools)s::text[], %(priorities)s::integer[],
                %(max_attempts)s::integer[], %(contexts)s::json[], %(concurrency_keys)s::text[],
                %(needs)s::jsonb[])
        WITH ORDINALITY AS c(command_id, execution_id, catalog_id, step, idx, pool, priority, max_attempts,
                             context, concurrency_key, needs, n)
    ORDER BY c.n
    RETURNING pool
)
SELECT pg_notify('noetl_commands', pool) FROM (SELECT DISTINCT pool FROM inserted) AS p

-- name: claim
-- The checked claim (noetl.claim, migration 0002): highest priority first, keys taking turns
-- within a priority, oldest first; resources, key limits and execution gates checked.
SELECT command_id, execution_id, catalog_id, step, idx AS "index", attempt, context, pool, priority,
       max_attempts, concurrency_key, needs
FROM noetl.claim(%(worker_id)s, %(pools)s::text[], %(limit)s, %(lease_seconds)s::float8, %(capacity)s::jsonb)
ORDER BY priority DESC, seq

-- name: heartbeat
-- Extends the leases the worker still holds; returns the ids it no longer holds.
WITH extended AS (
    UPDATE noetl.command
    SET lease_until = now() + make_interval(secs => %(lease_seconds)s)
    WHERE command_id = ANY(%(command_ids)s::text[]) AND status = 'leased' AND worker_id = %(worker_id)s
      AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
    RETURNING command_id
)
SELECT id FROM unnest(%(command_ids)s::text[]) AS id
WHERE id NOT IN (SELECT command_id FROM extended)

-- name: report
-- Only the holder of the current lease (same worker, same attempt) can complete a command.
WITH reported AS (
    UPDATE noetl.command
    SET status = CASE WHEN %(ok)s::boolean THEN 'done' ELSE 'failed' END, outcome = %(outcome)s,
        context = '{}'::json, lease_until = NULL, updated_at = now()
    WHERE command_id = %(command_id)s AND status = 'leased' AND worker_id = %(worker_id)s
      AND attempt = %(attempt)s
    RETURNING execution_id
)
SELECT pg_notify('noetl_results', execution_id::text) FROM reported

-- name: report_many
WITH reported AS (
    UPDATE noetl.command AS c
    SET status = CASE WHEN r.ok THEN 'done' ELSE 'failed' END, outcome = r.outcome,
        context = '{}'::json, lease_until = NULL, updated_at = now()
    FROM unnest(%(worker_ids)s::text[], %(command_ids)s::text[], %(attempts)s::integer[],
                %(oks)s::boolean[], %(outcomes)s::json[]) AS r(worker_id, command_id, attempt, ok, outcome)
    WHERE c.command_id = r.command_id AND c.status = 'leased' AND c.worker_id = r.worker_id
      AND c.attempt = r.attempt
    RETURNING c.command_id, c.execution_id
)
SELECT command_id, pg_notify('noetl_results', execution_id::text) FROM reported

-- name: notify_results
SELECT pg_notify('noetl_results', id::text) FROM unnest(%(execution_ids)s::bigint[]) AS id

-- name: release
-- A graceful give-back: ready again, and the attempt it used is returned.
WITH released AS (
    UPDATE noetl.command
    SET status = 'ready', worker_id = NULL, lease_until = NULL, attempt = greatest(attempt - 1, 0),
        updated_at = now()
    WHERE command_id = ANY(%(command_ids)s::text[]) AND status = 'leased' AND worker_id = %(worker_id)s
      AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'
    RETURNING command_id, pool
)
SELECT command_id, pg_notify('noetl_commands', pool) FROM released

-- name: expired_executions
-- The executions with expired leases. The reaper locks them (lock_executions: in id order, as every
-- pass does) before it reaps their commands: the re-issue events appended below need the
-- execution's lock, and taking it first keeps the lock order of a reporting worker (execution,
-- then command rows).
SELECT DISTINCT execution_id FROM noetl.command WHERE status = 'leased' AND lease_until < now()
LIMIT %(limit)s

-- name: lock_executions
SELECT execution_id FROM noetl.execution WHERE execution_id = ANY(%(execution_ids)s::bigint[])
ORDER BY execution_id
FOR UPDATE

-- name: reap
-- Expired leases: back to ready while attempts remain, else failed with a command.failed outcome
-- the orchestrator records like any reported one. SKIP LOCKED keeps a racing report or a second
-- reaper out of the same rows; the report then finds the lease gone and is dropped. Returns the
-- re-issued commands (retried) with the worker that lost them, and notifies.
WITH expired AS (
    SELECT command_id, worker_id FROM noetl.command
    WHERE status = 'leased' AND lease_until < now() AND execution_id = ANY(%(execution_ids)s::bigint[])
    ORDER BY lease_until
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), retried AS (
    UPDATE noetl.command AS c
    SET status = 'ready', worker_id = NULL, lease_until = NULL, updated_at = now()
    FROM expired AS e
    WHERE c.command_id = e.command_id AND c.attempt < c.max_attempts
    RETURNING c.command_id, c.pool, c.execution_id, c.step, c.attempt, e.worker_id AS lost_by
), failed AS (
    UPDATE noetl.command AS c
    SET status = 'failed', lease_until = NULL, updated_at = now(), context = '{}'::json,
        outcome = json_build_array(json_build_object(
            'event_type', 'command.failed',
            'step', c.step,
            'command_id', c.command_id,
            'timestamp', extract(epoch FROM now())::float8,
            'data', json_build_object(
                'index', c.idx,
                'error', json_build_object(
                    'kind', 'lease_expired',
                    'message', format('lease expired after %%s attempts (worker %%s)', c.attempt, c.worker_id),
                    'retryable', false))))
    FROM expired AS e
    WHERE c.command_id = e.command_id AND c.attempt >= c.max_attempts
    RETURNING c.command_id, c.execution_id
), notified AS (
    SELECT command_id, pg_notify('noetl_commands', pool) FROM retried
    UNION ALL
    SELECT command_id, pg_notify('noetl_results', execution_id::text) FROM failed
)
SELECT
    (SELECT count(*) FROM notified) AS handled,
    (SELECT coalesce(json_agg(json_build_object(
        'execution_id', execution_id, 'command_id', command_id, 'step', step, 'attempt', attempt,
        'worker_id', lost_by) ORDER BY execution_id, command_id), '[]') FROM retried) AS reissued

-- name: reissued
-- One command.reissued event per re-issued command, appended to its (locked, RUNNING) execution's
-- log after its last event, so that `noetl events` says why the step runs again.
WITH r AS (
    SELECT r.*, row_number() OVER (PARTITION BY r.execution_id ORDER BY r.command_id) AS n
    FROM json_to_recordset(%(rows)s::json)
        AS r(execution_id bigint, command_id text, step text, attempt integer, worker_id text)
), counted AS (
    SELECT execution_id, count(*) AS k FROM r GROUP BY execution_id
), moved AS (
    UPDATE noetl.execution AS x
    SET last_event_id = x.last_event_id + c.k, updated_at = now()
    FROM counted AS c
    WHERE x.execution_id = c.execution_id AND x.status = 'RUNNING'
    RETURNING x.execution_id, x.last_event_id - c.k AS base
)
INSERT INTO noetl.event (execution_id, event_id, event_type, step, command_id, data, at)
SELECT r.execution_id, m.base + r.n, 'command.reissued', r.step, r.command_id,
       jsonb_build_object(
           'reason', 'lease_expired',
           'message', format('the lease of worker %%s expired (no heartbeat): the command is queued '
                             'again (attempt %%s next)', r.worker_id, r.attempt + 1),
           'worker_id', r.worker_id, 'attempt', r.attempt + 1),
       extract(epoch FROM clock_timestamp())::float8
FROM r JOIN moved AS m ON m.execution_id = r.execution_id

-- name: pending_results
SELECT command_id, status, outcome FROM noetl.command
WHERE execution_id = %(execution_id)s AND status IN ('done', 'failed') AND NOT recorded
ORDER BY updated_at, seq

-- name: pending_results_many
SELECT execution_id, command_id, status, outcome FROM noetl.command
WHERE execution_id = ANY(%(execution_ids)s::bigint[]) AND status IN ('done', 'failed') AND NOT recorded
ORDER BY execution_id, updated_at, seq

-- name: mark_recorded
UPDATE noetl.command SET recorded = true, outcome = NULL
WHERE command_id = ANY(%(command_ids)s::text[]) AND status IN ('done', 'failed') AND NOT recorded

-- name: cancel
-- Found through the three queue indexes (ready, leased, waiting), so the cost follows the queue, not
-- the history.
WITH live AS (
    SELECT command_id FROM noetl.command WHERE status = 'ready' AND execution_id = %(execution_id)s
    UNION ALL
    SELECT command_id FROM noetl.command WHERE status = 'leased' AND execution_id = %(execution_id)s
    UNION ALL
    SELECT command_id FROM noetl.command WHERE status = 'waiting' AND execution_id = %(execution_id)s
), cancelled AS (
    UPDATE noetl.command
    SET status = 'cancelled', lease_until = NULL, wake_at = NULL, context = '{}'::json, updated_at = now()
    WHERE command_id = ANY(ARRAY(SELECT command_id FROM live)) AND status IN ('ready', 'leased', 'waiting')
    RETURNING command_id, seq, worker_id
), notified AS (
    -- each worker that held one of them learns it at once (it stops the task) instead of at its
    -- next heartbeat
    SELECT pg_notify('noetl_cancelled', worker_id)
    FROM (SELECT DISTINCT worker_id FROM cancelled WHERE worker_id IS NOT NULL) AS holders
)
SELECT command_id FROM cancelled CROSS JOIN (SELECT count(*) FROM notified) AS sent ORDER BY seq

-- name: depth
SELECT pool, count(*) FROM noetl.command WHERE status = 'ready' GROUP BY pool ORDER BY pool

-- name: waiting
-- Ready commands of one execution that have waited at least %(seconds)s seconds (for stall reports).
SELECT command_id, step, pool, needs, extract(epoch FROM now() - created_at)::float8 AS waited
FROM noetl.command
WHERE execution_id = %(execution_id)s AND status = 'ready' AND available_at <= now()
  AND created_at < now() - make_interval(secs => %(seconds)s)
ORDER BY seq
LIMIT 20

-- name: suspend
-- A leased command whose run ended waiting (call.waiting): no lease, no worker, and the attempt it
-- used given back. 'waiting' until what it waits for wakes it (wake_waiters, wake_due), or 'ready'
-- at once when that is ready already (%(ready)s: the caller checked under the lock that orders it
-- with the child's end). wake_at: when the wait times out (NULL: never). %(wait)s, kept in outcome,
-- says what it waits for. Only the holder of the current lease can suspend it.
WITH suspended AS (
    UPDATE noetl.command
    SET status = CASE WHEN %(ready)s::boolean THEN 'ready' ELSE 'waiting' END,
        worker_id = NULL, lease_until = NULL, attempt = greatest(attempt - 1, 0), outcome = %(wait)s,
        wake_at = CASE WHEN %(ready)s::boolean THEN NULL
                       ELSE now() + make_interval(secs => %(seconds)s::float8) END,
        available_at = now(), updated_at = now()
    WHERE command_id = %(command_id)s AND status = 'leased' AND worker_id = %(worker_id)s
      AND attempt = %(attempt)s
    RETURNING status, pool
)
SELECT status, CASE WHEN status = 'ready' THEN pg_notify('noetl_commands', pool)::text END FROM suspended

-- name: wake_waiters
-- The commands that called these (just ended) child executions and wait for them: ready again.
WITH woken AS (
    UPDATE noetl.command AS c
    SET status = 'ready', wake_at = NULL, available_at = now(), updated_at = now()
    FROM noetl.execution AS e
    WHERE e.execution_id = ANY(%(execution_ids)s::bigint[]) AND e.parent_key IS NOT NULL
      AND c.command_id = split_part(e.parent_key, '#', 1) AND c.status = 'waiting'
    RETURNING c.pool
)
SELECT pg_notify('noetl_commands', pool) FROM (SELECT DISTINCT pool FROM woken) AS p

-- name: wake_due
-- The reaper's sweep of waiting commands: those whose wait timed out (wake_at passed), and - a
-- safety net, the child's end wakes them in its own transaction - those whose child has ended.
WITH due AS (
    SELECT c.command_id FROM noetl.command AS c
    WHERE c.status = 'waiting'
      AND (c.wake_at <= now()
           OR EXISTS (SELECT 1 FROM noetl.execution AS e
                      WHERE e.execution_id = (c.outcome ->> 'execution_id')::bigint
                        AND e.status <> 'RUNNING'))
    ORDER BY c.wake_at NULLS LAST
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), woken AS (
    UPDATE noetl.command AS c
    SET status = 'ready', wake_at = NULL, available_at = now(), updated_at = now()
    FROM due
    WHERE c.command_id = due.command_id AND c.status = 'waiting'
    RETURNING c.command_id, c.pool
)
SELECT command_id, pg_notify('noetl_commands', pool) FROM woken
