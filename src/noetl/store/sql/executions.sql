-- name: create
INSERT INTO noetl.execution (execution_id, catalog_id, path, parent_execution_id, payload, principal)
VALUES (%(execution_id)s, %(catalog_id)s, %(path)s, %(parent_execution_id)s, %(payload)s, %(principal)s)

-- name: create_child
-- A child execution keyed by the parent command's call; nothing when that call already started one.
-- It runs for the principal that started its root: the parent's, copied down.
INSERT INTO noetl.execution (execution_id, catalog_id, path, parent_execution_id, payload, parent_key, principal)
VALUES (%(execution_id)s, %(catalog_id)s, %(path)s, %(parent_execution_id)s, %(payload)s, %(parent_key)s,
        (SELECT p.principal FROM noetl.execution p WHERE p.execution_id = %(parent_execution_id)s))
ON CONFLICT (parent_execution_id, parent_key) WHERE parent_key IS NOT NULL DO NOTHING
RETURNING execution_id

-- name: child_by_key
SELECT execution_id FROM noetl.execution
WHERE parent_execution_id = %(parent_execution_id)s AND parent_key = %(parent_key)s

-- name: get
SELECT execution_id, catalog_id, path, status, parent_execution_id, payload, result, error,
       last_event_id, cancel_requested, cancel_reason, created_at, updated_at, completed_at
FROM noetl.execution WHERE execution_id = %(execution_id)s

-- name: list
-- Newest first (ids grow with time).
SELECT execution_id, catalog_id, path, status, parent_execution_id, payload, result, error,
       last_event_id, cancel_requested, cancel_reason, created_at, updated_at, completed_at
FROM noetl.execution
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(path)s::text IS NULL OR path = %(path)s)
  AND (%(parent)s::bigint IS NULL OR parent_execution_id = %(parent)s)
  AND (%(catalog_id)s::bigint IS NULL OR catalog_id = %(catalog_id)s)
ORDER BY execution_id DESC
LIMIT %(limit)s OFFSET %(offset)s

-- name: lock
-- The orchestrator's per-execution lock: executions another pass holds are skipped, not waited for.
SELECT execution_id, catalog_id, path, status, parent_execution_id, payload, result, error,
       last_event_id, cancel_requested, cancel_reason, created_at, updated_at, completed_at
FROM noetl.execution
WHERE execution_id = ANY(%(execution_ids)s::bigint[]) AND status = 'RUNNING'
ORDER BY execution_id
FOR UPDATE SKIP LOCKED

-- name: lock_waiting
-- A waiting command's execution and the child it waits for, locked in id order (as every pass
-- locks), waiting for a pass that holds one: the child's end and the suspension are serialised.
SELECT execution_id, catalog_id, path, status, parent_execution_id, payload, result, error,
       last_event_id, cancel_requested, cancel_reason, created_at, updated_at, completed_at
FROM noetl.execution
WHERE execution_id = ANY(%(execution_ids)s::bigint[])
ORDER BY execution_id
FOR UPDATE

-- name: hold_parent
-- A child's start holds its parent (FOR SHARE) until it commits, so a cancellation of the parent
-- either sees the child among its children or is seen here (then the child starts cancelled).
SELECT status, cancel_requested, cancel_reason FROM noetl.execution
WHERE execution_id = %(execution_id)s
FOR SHARE

-- name: age
-- An execution's status and its age in seconds by the database's clock (a sub-playbook call's wait).
SELECT status, extract(epoch FROM now() - created_at)::float8 FROM noetl.execution
WHERE execution_id = %(execution_id)s

-- name: update
UPDATE noetl.execution
SET status = %(status)s,
    last_event_id = %(last_event_id)s,
    result = CASE WHEN %(set_result)s::boolean THEN %(result)s::json ELSE result END,
    error = CASE WHEN %(set_error)s::boolean THEN %(error)s::json ELSE error END,
    updated_at = now(),
    completed_at = CASE WHEN %(status)s = 'RUNNING' THEN NULL ELSE coalesce(completed_at, now()) END
WHERE execution_id = %(execution_id)s

-- name: request_cancel
WITH requested AS (
    UPDATE noetl.execution
    SET cancel_requested = true, cancel_reason = coalesce(cancel_reason, %(reason)s), updated_at = now()
    WHERE execution_id = %(execution_id)s AND status = 'RUNNING'
    RETURNING execution_id
)
SELECT pg_notify('noetl_results', execution_id::text) FROM requested

-- name: children
SELECT execution_id FROM noetl.execution
WHERE parent_execution_id = %(execution_id)s ORDER BY execution_id

-- name: descendants
WITH RECURSIVE tree(execution_id) AS (
    SELECT execution_id FROM noetl.execution WHERE parent_execution_id = %(execution_id)s
    UNION
    SELECT e.execution_id FROM noetl.execution AS e JOIN tree AS t ON e.parent_execution_id = t.execution_id
)
SELECT execution_id FROM tree ORDER BY execution_id

-- name: with_pending_work
-- Running executions with reported outcomes to record or a cancellation to handle.
SELECT w.execution_id
FROM (
    SELECT DISTINCT execution_id FROM noetl.command WHERE status IN ('done', 'failed') AND NOT recorded
    UNION
    SELECT execution_id FROM noetl.execution WHERE cancel_requested AND status = 'RUNNING'
) AS w
JOIN noetl.execution AS e ON e.execution_id = w.execution_id AND e.status = 'RUNNING'
ORDER BY w.execution_id
LIMIT %(limit)s

-- name: count_running
SELECT count(*) FROM noetl.execution WHERE status = 'RUNNING'

-- name: principal
-- Who started the root of this execution's tree (name, role, paths); NULL for executions older than
-- migration 0009 and for ones started without a principal.
SELECT principal FROM noetl.execution WHERE execution_id = %(execution_id)s
