-- 0001: the initial schema of the distributed runtime (see ../schema.sql for the annotated whole).

CREATE TABLE noetl.catalog (
    catalog_id bigint PRIMARY KEY,
    path text NOT NULL,
    version integer NOT NULL,
    kind text NOT NULL DEFAULT 'Playbook',
    content text NOT NULL,
    meta jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (path, version)
);

CREATE TABLE noetl.execution (
    execution_id bigint PRIMARY KEY,
    catalog_id bigint,
    path text NOT NULL,
    parent_execution_id bigint,
    status text NOT NULL DEFAULT 'RUNNING'
        CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED')),
    payload jsonb,
    result jsonb,
    error jsonb,
    last_event_id bigint NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    cancel_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
CREATE INDEX execution_status_idx ON noetl.execution (status);
CREATE INDEX execution_parent_idx ON noetl.execution (parent_execution_id);
CREATE INDEX execution_path_idx ON noetl.execution (path);
CREATE INDEX execution_cancel_idx ON noetl.execution (execution_id)
    WHERE cancel_requested AND status = 'RUNNING';

CREATE TABLE noetl.event (
    execution_id bigint NOT NULL,
    event_id bigint NOT NULL,
    event_type text NOT NULL,
    step text,
    command_id text,
    data jsonb NOT NULL DEFAULT '{}',
    at double precision NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, event_id)
);
CREATE INDEX event_type_idx ON noetl.event (execution_id, event_type);

CREATE TABLE noetl.command (
    seq bigserial NOT NULL,
    command_id text PRIMARY KEY,
    execution_id bigint NOT NULL,
    catalog_id bigint,
    step text NOT NULL,
    idx integer,
    pool text NOT NULL DEFAULT 'default',
    priority integer NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'ready'
        CHECK (status IN ('ready', 'leased', 'done', 'failed', 'cancelled')),
    available_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz,
    attempt integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 3,
    worker_id text,
    context jsonb NOT NULL DEFAULT '{}',
    outcome jsonb,
    recorded boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX command_claim_idx ON noetl.command (pool, priority DESC, seq) WHERE status = 'ready';
CREATE INDEX command_unrecorded_idx ON noetl.command (execution_id)
    WHERE status IN ('done', 'failed') AND NOT recorded;
CREATE INDEX command_lease_idx ON noetl.command (lease_until) WHERE status = 'leased';

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

CREATE TABLE noetl.result (
    ref text PRIMARY KEY,
    execution_id bigint NOT NULL,
    step text,
    data jsonb,
    size_bytes integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX result_execution_idx ON noetl.result (execution_id);
