-- The queue seen from above: depth for back-pressure, the numbers `noetl queue` shows, priority
-- aging and the admission table's upkeep. None of these is on a worker's hot path.

-- name: depth_at_least
-- Ready commands of a pool, counted up to a bound (the cost follows the bound, not the queue).
SELECT count(*) FROM (
    SELECT 1 FROM noetl.command WHERE status = 'ready' AND pool = %(pool)s LIMIT %(bound)s
) AS ready

-- name: stats
-- Per pool, priority and concurrency key: ready, in flight (leased) and the oldest ready's wait.
SELECT pool, priority, concurrency_key,
       count(*) FILTER (WHERE status = 'ready') AS ready,
       count(*) FILTER (WHERE status = 'leased') AS in_flight,
       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'ready')), 0)::float8
           AS oldest_wait_seconds
FROM (
    SELECT pool, priority, concurrency_key, status, created_at FROM noetl.command WHERE status = 'ready'
    UNION ALL
    SELECT pool, priority, concurrency_key, status, created_at FROM noetl.command WHERE status = 'leased'
) AS live
GROUP BY pool, priority, concurrency_key
ORDER BY pool, priority DESC, concurrency_key NULLS FIRST

-- name: age
-- The starvation guard: a ready command gains one priority step per `seconds` it waits, so
-- low-priority work still runs under sustained high-priority load.
WITH aged AS (
    UPDATE noetl.command SET priority = priority + 1, updated_at = now()
    WHERE status = 'ready' AND updated_at <= now() - make_interval(secs => %(seconds)s)
    RETURNING pool
)
SELECT pool, pg_notify('noetl_commands', pool) FROM (SELECT DISTINCT pool FROM aged) AS p

-- name: prune_admissions
DELETE FROM noetl.admission AS a
USING noetl.execution AS e
WHERE a.execution_id = e.execution_id AND e.status <> 'RUNNING'
