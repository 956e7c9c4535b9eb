-- name: search
-- One page of executions, newest first, after the keyset cursor (execution ids grow with time).
-- Each filter is off when its parameter is NULL; the walk is the primary key backwards, so a page
-- costs its LIMIT rows plus the rows the filters skip.
SELECT execution_id, catalog_id, path, status, parent_execution_id, payload, result, error,
       last_event_id, cancel_requested, cancel_reason, created_at, updated_at, completed_at
FROM noetl.execution
WHERE (%(cursor)s::bigint IS NULL OR execution_id < %(cursor)s)
  AND (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s))
  AND (%(prefix)s::text IS NULL OR path LIKE %(prefix)s)
  AND (%(globs)s::text[] IS NULL OR path LIKE ANY(%(globs)s))
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
  AND (%(parent)s::bigint IS NULL OR parent_execution_id = %(parent)s)
  AND (%(text)s::text IS NULL OR path ILIKE %(text)s OR execution_id::text = %(exact)s
       OR error::text ILIKE %(text)s)
ORDER BY execution_id DESC
LIMIT %(limit)s

-- name: changed
-- What may have changed since the last poll: the running executions, the ones newer than the
-- newest seen, and the ones that were running last time (they may have finished). Index scans
-- only (status, primary key): the cost follows the running set, not the table.
SELECT execution_id, catalog_id, path, status, parent_execution_id, NULL::jsonb AS payload,
       NULL::jsonb AS result, error, last_event_id, cancel_requested, cancel_reason, created_at,
       updated_at, completed_at
FROM noetl.execution
WHERE status = 'RUNNING' OR execution_id > %(newest)s OR execution_id = ANY(%(watched)s::bigint[])

-- name: newest
SELECT coalesce(max(execution_id), 0) FROM noetl.execution

-- name: markers
-- Per execution of a page: error outcomes and template warnings so far (the event type index).
SELECT execution_id, count(*) FILTER (WHERE event_type = 'call.error'),
       count(*) FILTER (WHERE event_type = 'template.warning')
FROM noetl.event
WHERE execution_id = ANY(%(ids)s::bigint[]) AND event_type IN ('call.error', 'template.warning')
GROUP BY execution_id

-- name: waiting
-- Per execution of a page: the oldest ready command that is due and still waits for a worker.
SELECT execution_id, extract(epoch FROM now() - min(available_at)), count(*)
FROM noetl.command
WHERE status = 'ready' AND execution_id = ANY(%(ids)s::bigint[]) AND available_at <= now()
GROUP BY execution_id

-- name: step_counts
-- Per step of one execution: what its events say so far (one pass over its log; the page then
-- follows the stream, so this runs once per page load, never per update).
SELECT step,
       count(*) FILTER (WHERE event_type = 'step.enter') AS runs,
       count(*) FILTER (WHERE event_type = 'command.issued') AS issued,
       count(*) FILTER (WHERE event_type = 'command.started') AS started,
       count(*) FILTER (WHERE event_type = 'command.completed') AS completed,
       count(*) FILTER (WHERE event_type = 'command.failed') AS failed,
       count(*) FILTER (WHERE event_type = 'command.cancelled') AS cancelled,
       count(*) FILTER (WHERE event_type = 'call.error') AS errors,
       count(*) FILTER (WHERE event_type = 'step.skipped') AS skipped,
       count(*) FILTER (WHERE event_type = 'step.failed') AS step_failed,
       count(*) FILTER (WHERE event_type = 'loop.done') AS loops_done,
       count(*) FILTER (WHERE event_type = 'step.exit') AS exits,
       max(event_id) FILTER (WHERE event_type = 'step.enter') AS entered_at_event,
       max(event_id) FILTER (WHERE event_type IN ('loop.done', 'step.failed', 'step.skipped')) AS closed_at_event,
       max(event_id) FILTER (WHERE event_type = 'step.exit' AND data->>'index' IS NULL) AS exit_at_event,
       (array_agg(event_type || ':' || coalesce(data->>'status', '') ORDER BY event_id DESC)
            FILTER (WHERE event_type IN ('loop.done', 'step.failed', 'step.skipped')
                       OR (event_type = 'step.exit' AND data->>'index' IS NULL)))[1] AS closing,
       min(at) AS first_at, max(at) AS last_at
FROM noetl.event
WHERE execution_id = %(execution_id)s AND step IS NOT NULL
GROUP BY step

-- name: loop_sizes
SELECT DISTINCT ON (step) step, json_array_length(data->'loop'->'items')
FROM noetl.event
WHERE execution_id = %(execution_id)s AND event_type = 'step.enter' AND data->'loop' IS NOT NULL
ORDER BY step, event_id DESC

-- name: first_event
SELECT data FROM noetl.event WHERE execution_id = %(execution_id)s AND event_id = 1

-- name: timeline
-- The commands of one execution (steps, loop iterations and their attempts), at most per_step of
-- each step, in the order they were issued.
SELECT step, command_id, idx, issued, started, ended, starts, errors, outcome FROM (
    SELECT step, command_id,
           max((data->>'index')::integer) AS idx,
           min(at) FILTER (WHERE event_type = 'command.issued') AS issued,
           -- the distributed runtime records no command.started: the call's own duration says
           coalesce(min(at) FILTER (WHERE event_type = 'command.started'),
                    min(at - coalesce((data->>'duration_ms')::float8, 0) / 1000)
                        FILTER (WHERE event_type IN ('call.done', 'call.error'))) AS started,
           max(at) FILTER (WHERE event_type IN ('command.completed', 'command.failed', 'command.cancelled')) AS ended,
           count(*) FILTER (WHERE event_type = 'command.started') AS starts,
           count(*) FILTER (WHERE event_type = 'call.error') AS errors,
           max(event_type) FILTER (WHERE event_type IN ('command.completed', 'command.failed', 'command.cancelled')) AS outcome,
           row_number() OVER (PARTITION BY step ORDER BY min(event_id)) AS n
    FROM noetl.event
    WHERE execution_id = %(execution_id)s AND command_id IS NOT NULL
    GROUP BY step, command_id
) AS c
WHERE n <= %(per_step)s
ORDER BY issued NULLS LAST, command_id

-- name: log
-- A page of the log, newest first, before the cursor, optionally of one type, one step, or
-- containing a text.
SELECT event_id, event_type, step, command_id, data, at
FROM noetl.event
WHERE execution_id = %(execution_id)s
  AND (%(before)s::bigint IS NULL OR event_id < %(before)s)
  AND (%(after)s::bigint IS NULL OR event_id > %(after)s)
  AND (%(event_type)s::text IS NULL OR event_type = %(event_type)s)
  AND (%(step)s::text IS NULL OR step = %(step)s)
  AND (%(text)s::text IS NULL OR data::text ILIKE %(text)s)
ORDER BY event_id DESC
LIMIT %(limit)s

-- name: step_outcomes
-- One step's outcomes (results, errors, warnings, loop and failure records), oldest first, errors
-- before successes so that a failure among 10,000 iterations is on the first page.
SELECT event_id, event_type, step, command_id, data, at
FROM noetl.event
WHERE execution_id = %(execution_id)s AND step = %(step)s
  AND event_type IN ('call.done', 'call.error', 'step.failed', 'loop.done', 'template.warning',
                     'step.skipped', 'next.evaluated', 'command.failed')
ORDER BY (event_type = 'call.done'), event_id
LIMIT %(limit)s
