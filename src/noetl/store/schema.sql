-- The NoETL schema as it stands after every migration: the one place to read it whole.
--
-- The migrations under migrations/ are what `noetl db migrate` applies; a contract test proves they
-- produce exactly this schema. Change both together: add a numbered migration, then edit this file.
--
-- Invariants the tables serve (ARCHITECTURE.md):
--   * event is the truth: append-only, one row per fact, ids 1, 2, 3... per execution;
--   * execution and command are projections the orchestrator maintains in the same transaction as
--     the events it appends;
--   * command is also the queue: workers claim `ready` rows with FOR UPDATE SKIP LOCKED, a reported
--     outcome waits with recorded = false until the orchestrator folds it into events.

CREATE SCHEMA IF NOT EXISTS noetl;

-- Applied migrations (created by migrate.py before the first migration runs).
CREATE TABLE noetl.schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Registered playbooks: every registration of a path adds the next version (1, 2, 3...).
CREATE TABLE noetl.catalog (
    catalog_id bigint PRIMARY KEY,                  -- snowflake id (noetl.store.ids)
    path text NOT NULL,
    version integer NOT NULL,
    kind text NOT NULL DEFAULT 'Playbook',
    content text NOT NULL,                          -- the YAML exactly as registered
    meta jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (path, version)
);

-- One row per execution: a projection of its events, locked while the orchestrator decides.
CREATE TABLE noetl.execution (
    execution_id bigint PRIMARY KEY,
    catalog_id bigint,
    path text NOT NULL,
    parent_execution_id bigint,                     -- set for sub-playbook executions
    status text NOT NULL DEFAULT 'RUNNING'
        CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    payload jsonb,
    result jsonb,
    error jsonb,
    last_event_id bigint NOT NULL DEFAULT 0,        -- the highest event id appended so far
    cancel_requested boolean NOT NULL DEFAULT false,
    cancel_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX execution_status_idx ON noetl.execution (status);
CREATE INDEX execution_parent_idx ON noetl.execution (parent_execution_id);
CREATE INDEX execution_path_idx ON noetl.execution (path);
-- Cancellations the orchestrator has not handled yet.
CREATE INDEX execution_cancel_idx ON noetl.execution (execution_id)
    WHERE cancel_requested AND status = 'RUNNING';

-- The event log: append-only, the truth every other table can be rebuilt from.
CREATE TABLE noetl.event (
    execution_id bigint NOT NULL,
    event_id bigint NOT NULL,                       -- 1, 2, 3... within the execution
    event_type text NOT NULL,                       -- REFERENCE §5.2 names (playbook.initialized, ...)
    step text,
    command_id text,
    data jsonb NOT NULL DEFAULT '{}',
    at double precision NOT NULL,                   -- the event's own time, seconds since the epoch
    created_at timestamptz NOT NULL DEFAULT now(),  -- when it was written
    PRIMARY KEY (execution_id, event_id)
);
CREATE INDEX event_type_idx ON noetl.event (execution_id, event_type);

-- The command queue. ready -> leased -> done | failed (reported) -> recorded; or cancelled.
CREATE TABLE noetl.command (
    seq bigserial NOT NULL,                         -- age order for claims
    command_id text PRIMARY KEY,                    -- "<execution_id>:<n>", assigned by the engine
    execution_id bigint NOT NULL,
    catalog_id bigint,
    step text NOT NULL,
    idx integer,                                    -- loop iteration, NULL for plain steps
    pool text NOT NULL DEFAULT 'default',
    priority integer NOT NULL DEFAULT 0,            -- higher first
    status text NOT NULL DEFAULT 'ready'
        CHECK (status IN ('ready', 'leased', 'done', 'failed', 'cancelled')),
    available_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    attempt integer NOT NULL DEFAULT 0,             -- claims so far; a graceful release gives one back
    max_attempts integer NOT NULL DEFAULT 3,
    worker_id text,
    context jsonb NOT NULL DEFAULT '{}',            -- the render context the worker starts from
    outcome jsonb,                                  -- the reported events, until recorded
    recorded boolean NOT NULL DEFAULT false,        -- the orchestrator folded the outcome into events
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Claims: the oldest highest-priority ready commands of a pool.
CREATE INDEX command_claim_idx ON noetl.command (pool, priority DESC, seq) WHERE status = 'ready';
-- Reported outcomes the orchestrator has not recorded yet.
CREATE INDEX command_unrecorded_idx ON noetl.command (execution_id)
    WHERE status IN ('done', 'failed') AND NOT recorded;
-- The reaper's scan for expired leases.
CREATE INDEX command_lease_idx ON noetl.command (lease_until) WHERE status = 'leased';
-- Deliberately no more indexes: every claim, report and record writes a new row version into each
-- index whose predicate it matches (a status change is never a HOT update), and this is the hot path.
-- seq needs no unique index (a sequence does not repeat), and an execution's live commands are found
-- through claim_idx and lease_idx, which hold only the queue, not the history.

-- Credentials: data_encrypted is AES-256-GCM envelope ciphertext (noetl.store.crypto), never plain.
CREATE TABLE noetl.credential (
    name text PRIMARY KEY,
    type text NOT NULL,
    data_encrypted bytea NOT NULL,
    meta jsonb NOT NULL DEFAULT '{}',
    description text,
    tags text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The worker registry: live workers heartbeat here.
CREATE TABLE noetl.runtime (
    worker_id text PRIMARY KEY,
    name text NOT NULL,
    kind text NOT NULL DEFAULT 'worker_pool',
    pools text[] NOT NULL DEFAULT '{default}',
    status text NOT NULL DEFAULT 'ready',
    capacity integer,
    hostname text,
    pid integer,
    meta jsonb NOT NULL DEFAULT '{}',
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now()
);

-- Large results kept out of events; an event carries the ref and a small extract.
CREATE TABLE noetl.result (
    ref text PRIMARY KEY,
    execution_id bigint NOT NULL,
    step text,
    data jsonb,
    size_bytes integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX result_execution_idx ON noetl.result (execution_id);

-- ---- 0003_auth: access control --------------------------------------------------------------

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

-- Idempotent sub-playbook starts: a child execution remembers which call of which parent command
-- started it, so a command that runs again (at-least-once execution: its lease expired, a worker
-- died) attaches to the child its first run started instead of starting a second one.
ALTER TABLE noetl.execution ADD COLUMN parent_key text;
CREATE UNIQUE INDEX execution_parent_key_idx ON noetl.execution (parent_execution_id, parent_key)
    WHERE parent_key IS NOT NULL;

-- ---- 0005_json_order: values keep the key order they were written in ---------------------------
-- Values users wrote keep their key order. jsonb sorts object keys (by length, then bytes), so a
-- result {"b": 1, "a": 2} came back as {"a": 2, "b": 1} from the distributed runtime and in the
-- same order as written from the local one. json keeps the text as written; these columns are
-- written and read whole, never searched inside, so nothing is lost (and json is cheaper to write).
ALTER TABLE noetl.event ALTER COLUMN data DROP DEFAULT;
ALTER TABLE noetl.event ALTER COLUMN data TYPE json USING data::json;
ALTER TABLE noetl.event ALTER COLUMN data SET DEFAULT '{}'::json;
ALTER TABLE noetl.command ALTER COLUMN context DROP DEFAULT;
ALTER TABLE noetl.command ALTER COLUMN context TYPE json USING context::json;
ALTER TABLE noetl.command ALTER COLUMN context SET DEFAULT '{}'::json;
ALTER TABLE noetl.command ALTER COLUMN outcome TYPE json USING outcome::json;
ALTER TABLE noetl.execution ALTER COLUMN payload TYPE json USING payload::json;
ALTER TABLE noetl.execution ALTER COLUMN result TYPE json USING result::json;
ALTER TABLE noetl.execution ALTER COLUMN error TYPE json USING error::json;
ALTER TABLE noetl.result ALTER COLUMN data TYPE json USING data::json;
