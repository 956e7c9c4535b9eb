-- Schedules (table noetl.schedule, migration 0002). The scheduler leader reads the due ones with
-- FOR UPDATE SKIP LOCKED, starts their executions and moves next_run_at on.

-- name: put
INSERT INTO noetl.schedule
    (name, path, cron, interval_seconds, timezone, payload, misfire, catch_up_limit, paused, next_run_at)
VALUES (%(name)s, %(path)s, %(cron)s, %(interval_seconds)s, %(timezone)s, %(payload)s, %(misfire)s,
        %(catch_up_limit)s, false, %(next_run_at)s)
ON CONFLICT (name) DO UPDATE
SET path = excluded.path, cron = excluded.cron, interval_seconds = excluded.interval_seconds,
    timezone = excluded.timezone, payload = excluded.payload, misfire = excluded.misfire,
    catch_up_limit = excluded.catch_up_limit, next_run_at = excluded.next_run_at
RETURNING *

-- name: list
SELECT * FROM noetl.schedule ORDER BY name

-- name: get
SELECT * FROM noetl.schedule WHERE name = %(name)s

-- name: pause
UPDATE noetl.schedule SET paused = %(paused)s WHERE name = %(name)s RETURNING *

-- name: resume
-- Resuming starts from now: the time spent paused is not "missed".
UPDATE noetl.schedule SET paused = false, next_run_at = %(next_run_at)s WHERE name = %(name)s RETURNING *

-- name: delete
DELETE FROM noetl.schedule WHERE name = %(name)s RETURNING name

-- name: due
SELECT * FROM noetl.schedule
WHERE NOT paused AND next_run_at <= %(now)s
ORDER BY next_run_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: advance
UPDATE noetl.schedule
SET next_run_at = %(next_run_at)s,
    last_run_at = coalesce(%(last_run_at)s, last_run_at),
    last_execution_id = coalesce(%(last_execution_id)s, last_execution_id),
    runs = runs + %(runs)s
WHERE name = %(name)s
