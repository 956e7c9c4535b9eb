-- Webhook triggers (table noetl.trigger, migration 0002); the secret is stored encrypted.

-- name: put
INSERT INTO noetl.trigger (name, path, secret_encrypted, enabled) VALUES (%(name)s, %(path)s, %(secret)s, true)
ON CONFLICT (name) DO UPDATE SET path = excluded.path, secret_encrypted = excluded.secret_encrypted

-- name: get
SELECT name, path, secret_encrypted, enabled, fired, created_at FROM noetl.trigger WHERE name = %(name)s

-- name: list
SELECT name, path, enabled, fired, created_at FROM noetl.trigger ORDER BY name

-- name: delete
DELETE FROM noetl.trigger WHERE name = %(name)s RETURNING name

-- name: fired
UPDATE noetl.trigger SET fired = fired + 1 WHERE name = %(name)s
