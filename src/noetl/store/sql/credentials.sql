-- name: put
INSERT INTO noetl.credential (name, type, data_encrypted, meta, description, tags, allow_paths)
VALUES (%(name)s, %(type)s, %(data_encrypted)s, %(meta)s, %(description)s, %(tags)s, %(allow_paths)s)
ON CONFLICT (name) DO UPDATE
SET type = excluded.type, data_encrypted = excluded.data_encrypted, meta = excluded.meta,
    description = excluded.description, tags = excluded.tags, allow_paths = excluded.allow_paths,
    updated_at = now()
RETURNING name, type, meta, description, tags, allow_paths, created_at, updated_at

-- name: get
SELECT name, type, meta, description, tags, allow_paths, created_at, updated_at, data_encrypted
FROM noetl.credential WHERE name = %(name)s

-- name: list
-- q matches the name, the description or a tag, case-insensitively.
SELECT name, type, meta, description, tags, allow_paths, created_at, updated_at
FROM noetl.credential
WHERE (%(type)s::text IS NULL OR type = %(type)s)
  AND (%(pattern)s::text IS NULL OR name ILIKE %(pattern)s OR description ILIKE %(pattern)s
       OR EXISTS (SELECT 1 FROM unnest(tags) AS tag WHERE tag ILIKE %(pattern)s))
ORDER BY name

-- name: delete
DELETE FROM noetl.credential WHERE name = %(name)s

-- name: sealed_batch
-- Rotation walks the table in name order, a batch at a time, locking only the rows it rewrites.
SELECT name, data_encrypted FROM noetl.credential
WHERE name > %(after)s ORDER BY name LIMIT %(limit)s FOR UPDATE

-- name: reseal
UPDATE noetl.credential SET data_encrypted = %(data_encrypted)s WHERE name = %(name)s
