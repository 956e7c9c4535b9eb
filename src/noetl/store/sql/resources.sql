-- Named global resources (table noetl.global_resource, migration 0002). What is in use is the sum
-- over leased commands that need the resource (noetl.claim checks it under its lock).

-- name: put
INSERT INTO noetl.global_resource (name, capacity) VALUES (%(name)s, %(capacity)s)
ON CONFLICT (name) DO UPDATE SET capacity = excluded.capacity, updated_at = now()

-- name: list
SELECT r.name, r.capacity,
       (SELECT coalesce(sum((c.needs -> 'resources' ->> r.name)::integer), 0)
        FROM noetl.command AS c
        WHERE c.status = 'leased' AND c.needs IS NOT NULL AND c.needs -> 'resources' ? r.name) AS in_use
FROM noetl.global_resource AS r
ORDER BY r.name

-- name: delete
DELETE FROM noetl.global_resource WHERE name = %(name)s RETURNING name
