-- name: register
INSERT INTO noetl.runtime (worker_id, name, pools, status, capacity, hostname, pid, meta)
VALUES (%(worker_id)s, %(name)s, %(pools)s, 'ready', %(capacity)s, %(hostname)s, %(pid)s, %(meta)s)
ON CONFLICT (worker_id) DO UPDATE
SET name = excluded.name, pools = excluded.pools, status = 'ready', capacity = excluded.capacity,
    hostname = excluded.hostname, pid = excluded.pid, meta = excluded.meta,
    started_at = now(), heartbeat = now()

-- name: heartbeat
UPDATE noetl.runtime SET heartbeat = now() WHERE worker_id = %(worker_id)s

-- name: deregister
DELETE FROM noetl.runtime WHERE worker_id = %(worker_id)s

-- name: list
SELECT worker_id, name, kind, pools, status, capacity, hostname, pid, meta, started_at, heartbeat,
       extract(epoch FROM now() - heartbeat)::float8 AS heartbeat_age
FROM noetl.runtime ORDER BY name, worker_id
