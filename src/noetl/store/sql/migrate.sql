-- name: lock
-- Serialise migrations across processes (servers starting together); the key spells "noetl_mg".
SELECT pg_advisory_lock(7957690617295760743)

-- name: unlock
SELECT pg_advisory_unlock(7957690617295760743)

-- name: bootstrap
-- The bookkeeping table must exist before the first migration; schema.sql declares it too.
CREATE SCHEMA IF NOT EXISTS noetl;
CREATE TABLE IF NOT EXISTS noetl.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied
SELECT version, name, applied_at FROM noetl.schema_migrations ORDER BY version

-- name: has_table
SELECT to_regclass('noetl.schema_migrations') IS NOT NULL

-- name: record
INSERT INTO noetl.schema_migrations (version, name) VALUES (%(version)s, %(name)s)
