-- name: lock_path
-- Registrations of one path take turns, so each gets the next version.
SELECT pg_advisory_xact_lock(hashtextextended('noetl.catalog:' || %(path)s, 0))

-- name: insert
INSERT INTO noetl.catalog (catalog_id, path, version, kind, content, meta)
SELECT %(catalog_id)s, %(path)s, coalesce(max(version), 0) + 1, %(kind)s, %(content)s, %(meta)s
FROM noetl.catalog WHERE path = %(path)s
RETURNING catalog_id, path, version, kind, content, meta, created_at

-- name: by_id
SELECT catalog_id, path, version, kind, content, meta, created_at
FROM noetl.catalog WHERE catalog_id = %(catalog_id)s

-- name: by_path_version
SELECT catalog_id, path, version, kind, content, meta, created_at
FROM noetl.catalog WHERE path = %(path)s AND version = %(version)s

-- name: latest
-- the latest version of a path; a playbook may also be named by its metadata.name (DECISIONS 20)
SELECT catalog_id, path, version, kind, content, meta, created_at
FROM noetl.catalog WHERE path = %(path)s OR meta->>'name' = %(path)s
ORDER BY (path = %(path)s) DESC, version DESC LIMIT 1

-- name: list
SELECT catalog_id, path, version, kind, content, meta, created_at
FROM noetl.catalog
WHERE (%(kind)s::text IS NULL OR kind = %(kind)s) AND (%(path)s::text IS NULL OR path = %(path)s)
ORDER BY path, version
