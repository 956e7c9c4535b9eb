-- name: append
-- One multi-row INSERT: the events of a decision, ids first_id, first_id + 1, ...
INSERT INTO noetl.event (execution_id, event_id, event_type, step, command_id, data, at)
SELECT %(execution_id)s, %(first_id)s + e.n - 1, e.event_type, e.step, e.command_id, e.data, e.at
FROM unnest(%(event_types)s::text[], %(steps)s::text[], %(command_ids)s::text[], %(data)s::jsonb[],
            %(at)s::float8[]) WITH ORDINALITY AS e(event_type, step, command_id, data, at, n)

-- name: read
SELECT event_id, event_type, step, command_id, data, at
FROM noetl.event
WHERE execution_id = %(execution_id)s AND event_id > %(after)s
  AND (%(event_type)s::text IS NULL OR event_type = %(event_type)s)
ORDER BY event_id
LIMIT %(limit)s

-- name: count
SELECT count(*) FROM noetl.event WHERE execution_id = %(execution_id)s

-- name: loop_results
-- The iterations' outcomes of one run of a loop step whose results stay in the log (DECISIONS 19).
SELECT (data->>'index')::integer, event_type = 'call.done', data->'result'
FROM noetl.event
WHERE execution_id = %(execution_id)s AND event_type IN ('call.done', 'call.error') AND step = %(step)s
  AND event_id > %(after)s AND (%(until)s = 0 OR event_id < %(until)s)
ORDER BY event_id
