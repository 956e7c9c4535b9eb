-- name: register
INSERT INTO noetl.runtime (worker_id, name, pools, status, capacity, hostname, pid, meta)
VALUES (%(worker_id)s, %(name)s, %(pools)s, 'ready', %(capacity)s, %(hostname)s, %(pid)s, %(meta)s)
ON CONFLICT (worker_id) DO UPDATE
SET name = excluded.name, pools = excluded.pools, status = 'ready', capacity = excluded.capacity,
    hostname = excluded.hostname, pid = excluded.pid, meta = excluded.meta,
    started_at = now(), heartbeat = now()

-- name: heartbeat
UPDATE noetl.runtime SET heartbeat = now(), metrics = coalesce(%(metrics)s, metrics)
WHERE worker_id = %(worker_id)s

-- name: metrics
-- The metrics text of workers that heartbeat within the last %(fresh)s seconds.
SELECT worker_id, metrics FROM noetl.runtime
WHERE metrics IS NOT NULL AND heartbeat > now() - make_interval(secs => %(fresh)s)

-- name: deregister
DELETE FROM noetl.runtime WHERE worker_id = %(worker_id)s

-- name: list
SELECT worker_id, name, kind, pools, status, capacity, hostname, pid, meta, started_at, heartbeat,
       extract(epoch FROM now() - heartbeat)::float8 AS heartbeat_age
FROM noetl.runtime ORDER BY name, worker_id
