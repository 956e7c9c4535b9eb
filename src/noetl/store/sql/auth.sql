-- name: create_key
INSERT INTO noetl.api_key (key_id, name, prefix, secret_hash, role, paths, expires_at)
VALUES (%(key_id)s, %(name)s, %(prefix)s, %(secret_hash)s, %(role)s, %(paths)s, %(expires_at)s)
RETURNING key_id, name, prefix, role, paths, created_at, expires_at, revoked_at, last_used_at

-- name: find_key
-- A usable key: not revoked, not expired. Marks it used (at most once a minute, to spare writes).
UPDATE noetl.api_key
SET last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < now() - interval '1 minute'
                        THEN now() ELSE last_used_at END
WHERE secret_hash = %(secret_hash)s AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
RETURNING key_id, name, prefix, role, paths, created_at, expires_at, revoked_at, last_used_at

-- name: list_keys
SELECT key_id, name, prefix, role, paths, created_at, expires_at, revoked_at, last_used_at
FROM noetl.api_key ORDER BY name

-- name: revoke_key
UPDATE noetl.api_key SET revoked_at = now() WHERE name = %(name)s AND revoked_at IS NULL

-- name: record
INSERT INTO noetl.audit (audit_id, actor, action, resource, execution_id, decision, detail)
VALUES (%(audit_id)s, %(actor)s, %(action)s, %(resource)s, %(execution_id)s, %(decision)s, %(detail)s)

-- name: trail
SELECT audit_id, at, actor, action, resource, execution_id, decision, detail
FROM noetl.audit
WHERE (%(action)s::text IS NULL OR action = %(action)s)
  AND (%(execution_id)s::bigint IS NULL OR execution_id = %(execution_id)s)
ORDER BY audit_id DESC LIMIT %(limit)s
