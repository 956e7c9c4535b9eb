-- Access control: API keys (stored hashed), the audit trail, and credential scopes.

-- Catalog path patterns (fnmatch, e.g. 'finance/*') a credential may be used by; empty = any.
ALTER TABLE noetl.credential ADD COLUMN allow_paths text[] NOT NULL DEFAULT '{}';

-- API keys for the gateway: only the SHA-256 of the key is kept; the key is shown once.
CREATE TABLE noetl.api_key (
    key_id bigint PRIMARY KEY,                      -- snowflake id
    name text NOT NULL UNIQUE,
    prefix text NOT NULL,                           -- first characters, to recognise a key in lists
    secret_hash bytea NOT NULL UNIQUE,
    role text NOT NULL CHECK (role IN ('admin', 'operator', 'developer', 'viewer')),
    paths text[] NOT NULL DEFAULT '{*}',            -- catalog path patterns this key may touch
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz
);

-- Who did what to which resource, and whether it was allowed: access decisions of the gateway,
-- credential reads by workers and the server. Never holds a secret value.
CREATE TABLE noetl.audit (
    audit_id bigint PRIMARY KEY,                    -- snowflake id (sorts by time)
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    resource text,
    execution_id bigint,
    decision text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_action_idx ON noetl.audit (action, audit_id);
