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

-- ---- 0002: scheduling (migrations/0002_scheduling.sql) -------------------------------------------

-- A command's concurrency key (rendered from the step's spec.concurrency_key); claims share workers
-- fairly between keys.
ALTER TABLE noetl.command ADD COLUMN concurrency_key text;
-- What a claim must check before leasing the command; NULL for the plain commands (the fast path):
-- {"resources": {name: amount}, "key_limit": n, "gate": playbook path, "gate_limit": n}.
ALTER TABLE noetl.command ADD COLUMN needs jsonb;

-- The ready constrained commands (every keyed one is): a claim finds every key, however deep in
-- the queue, and knows at once whether a pool holds any (if not, it takes the plain fast path).
CREATE INDEX command_key_idx ON noetl.command (pool, concurrency_key, priority DESC, seq)
    WHERE status = 'ready' AND needs IS NOT NULL;
-- Leased constrained commands: what resources, keys and gates hold right now.
CREATE INDEX command_held_idx ON noetl.command (concurrency_key)
    WHERE status = 'leased' AND needs IS NOT NULL;

-- Named global resources: at most `capacity` units held by leased commands across all workers.
CREATE TABLE noetl.global_resource (
    name text PRIMARY KEY,
    capacity integer NOT NULL CHECK (capacity >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Executions admitted under their playbook's executor.spec.max_concurrent_executions (the gate is
-- the playbook path); an execution is admitted when the first of its commands is claimed.
CREATE TABLE noetl.admission (
    execution_id bigint PRIMARY KEY,
    gate text NOT NULL,
    admitted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX admission_gate_idx ON noetl.admission (gate);

-- Schedules: start an execution of `path` on a cron expression or every `interval_seconds`.
CREATE TABLE noetl.schedule (
    name text PRIMARY KEY,
    path text NOT NULL,
    cron text,
    interval_seconds double precision CHECK (interval_seconds > 0),
    timezone text NOT NULL DEFAULT 'UTC',
    payload jsonb NOT NULL DEFAULT '{}',
    misfire text NOT NULL DEFAULT 'run_once' CHECK (misfire IN ('skip', 'run_once', 'catch_up')),
    catch_up_limit integer NOT NULL DEFAULT 10 CHECK (catch_up_limit > 0),
    paused boolean NOT NULL DEFAULT false,
    next_run_at timestamptz NOT NULL,
    last_run_at timestamptz,
    last_execution_id bigint,
    runs integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((cron IS NULL) <> (interval_seconds IS NULL))
);
CREATE INDEX schedule_due_idx ON noetl.schedule (next_run_at) WHERE NOT paused;

-- Webhook triggers: POST /api/triggers/{name} signed with HMAC-SHA256 of the body under the secret
-- (stored encrypted like credentials) starts an execution of `path` with the body as payload.
CREATE TABLE noetl.trigger (
    name text PRIMARY KEY,
    path text NOT NULL,
    secret_encrypted bytea NOT NULL,
    enabled boolean NOT NULL DEFAULT true,
    fired integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The checked claim: up to p_limit ready commands of the worker's pools, leased to p_worker.
-- When the pools hold no constrained command (the usual case) it is the plain ordered scan.
-- Candidates are the head of each pool's queue (locked as scanned, SKIP LOCKED) plus the head of
-- each concurrency key's queue and, in pools where keys queue, the head of the commands without a
-- key (these locked one by one when their turn comes).
-- They are taken in priority order; within a priority, keys take turns (a key's turn counts the
-- commands it already has in flight, so the key with the fewest goes first), then oldest first.
-- A plain command (needs IS NULL) is taken as it comes. A constrained one is checked under one
-- transaction-level advisory lock, so that concurrent claimers cannot both take the last unit:
-- its worker resources must fit p_capacity less what this worker holds, its global resources
-- their capacity less what all leased commands hold, its key fewer than key_limit in flight, and
-- its execution must be admitted (or admissible) under its gate.
CREATE FUNCTION noetl.claim(p_worker text, p_pools text[], p_limit integer, p_lease double precision,
                            p_capacity jsonb)
RETURNS SETOF noetl.command
LANGUAGE plpgsql AS $$
DECLARE
    cand record;
    taken text[] := '{}';
    locked boolean := false;
    held jsonb := '{}';     -- resource name -> units held (this worker's local ones, all global ones)
    keys jsonb := '{}';     -- concurrency key -> commands in flight
    gates jsonb := '{}';    -- gate -> admitted executions still running
    admitted bigint[] := '{}';
    res record;
    fits boolean;
    global_cap integer;
    amount integer;
    v_gate text;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_limit <= 0 THEN
        RETURN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM noetl.command AS c
                   WHERE c.status = 'ready' AND c.needs IS NOT NULL AND c.pool = ANY(p_pools)) THEN
        -- the plain fast path: nothing to check, no keys to rotate - one ordered scan per pool
        RETURN QUERY
        WITH picked AS (
            SELECT r.command_id FROM unnest(p_pools) AS p(pool)
            CROSS JOIN LATERAL (
                SELECT c.command_id, c.priority, c.seq FROM noetl.command AS c
                WHERE c.status = 'ready' AND c.pool = p.pool AND c.available_at <= now()
                  AND c.needs IS NULL  -- one queued since the check above waits for the next claim
                ORDER BY c.priority DESC, c.seq
                LIMIT p_limit
                FOR UPDATE SKIP LOCKED
            ) AS r
            ORDER BY r.priority DESC, r.seq
            LIMIT p_limit
        )
        UPDATE noetl.command AS c
        SET status = 'leased', worker_id = p_worker, attempt = c.attempt + 1,
            lease_until = now() + make_interval(secs => p_lease), updated_at = now()
        WHERE c.command_id = ANY(ARRAY(SELECT command_id FROM picked))
        RETURNING c.*;
        RETURN;
    END IF;
    FOR cand IN
        WITH RECURSIVE key_heads(pool, k) AS (
            SELECT p.pool, (SELECT c.concurrency_key FROM noetl.command AS c
                            WHERE c.status = 'ready' AND c.needs IS NOT NULL AND c.concurrency_key IS NOT NULL
                              AND c.pool = p.pool
                            ORDER BY c.concurrency_key LIMIT 1)
            FROM unnest(p_pools) AS p(pool)
            UNION ALL
            SELECT h.pool, (SELECT c.concurrency_key FROM noetl.command AS c
                            WHERE c.status = 'ready' AND c.needs IS NOT NULL AND c.concurrency_key IS NOT NULL
                              AND c.pool = h.pool
                              AND c.concurrency_key > h.k
                            ORDER BY c.concurrency_key LIMIT 1)
            FROM key_heads AS h WHERE h.k IS NOT NULL
        ), heads AS (
            SELECT r.* FROM unnest(p_pools) AS p(pool)
            CROSS JOIN LATERAL (
                SELECT c.command_id, c.execution_id, c.priority, c.seq, c.concurrency_key, c.needs,
                       true AS locked
                FROM noetl.command AS c
                WHERE c.status = 'ready' AND c.pool = p.pool AND c.available_at <= now()
                ORDER BY c.priority DESC, c.seq
                LIMIT p_limit
                FOR UPDATE SKIP LOCKED
            ) AS r
            UNION ALL
            SELECT r.* FROM (SELECT * FROM key_heads WHERE k IS NOT NULL LIMIT 256) AS h
            CROSS JOIN LATERAL (
                SELECT c.command_id, c.execution_id, c.priority, c.seq, c.concurrency_key, c.needs,
                       false AS locked
                FROM noetl.command AS c
                WHERE c.status = 'ready' AND c.needs IS NOT NULL AND c.pool = h.pool AND c.concurrency_key = h.k
                  AND c.available_at <= now()
                ORDER BY c.priority DESC, c.seq
                LIMIT p_limit
            ) AS r
            UNION ALL
            -- where keys queue, the commands without a key take turns as one more key
            SELECT r.* FROM (SELECT DISTINCT pool FROM key_heads WHERE k IS NOT NULL) AS h
            CROSS JOIN LATERAL (
                SELECT c.command_id, c.execution_id, c.priority, c.seq, c.concurrency_key, c.needs,
                       false AS locked
                FROM noetl.command AS c
                WHERE c.status = 'ready' AND c.pool = h.pool AND c.concurrency_key IS NULL
                  AND c.available_at <= now()
                ORDER BY c.priority DESC, c.seq
                LIMIT p_limit
            ) AS r
        ), distinct_heads AS (
            SELECT DISTINCT ON (command_id) * FROM heads ORDER BY command_id, locked DESC
        ), flying AS (
            SELECT f.k, (SELECT count(*) FROM noetl.command AS c
                         WHERE c.status = 'leased' AND c.needs IS NOT NULL AND c.concurrency_key = f.k) AS n
            FROM (SELECT DISTINCT concurrency_key AS k FROM distinct_heads
                  WHERE concurrency_key IS NOT NULL) AS f
        )
        SELECT d.*, coalesce(f.n, 0) + row_number() OVER (
                   PARTITION BY d.concurrency_key ORDER BY d.priority DESC, d.seq) AS turn
        FROM distinct_heads AS d LEFT JOIN flying AS f ON f.k = d.concurrency_key
        ORDER BY d.priority DESC, turn, d.seq
    LOOP
        EXIT WHEN cardinality(taken) >= p_limit;
        IF NOT cand.locked THEN  -- a key's head found past the pool's head: lock it now, or skip it
            PERFORM 1 FROM noetl.command
            WHERE command_id = cand.command_id AND status = 'ready' FOR UPDATE SKIP LOCKED;
            CONTINUE WHEN NOT FOUND;
        END IF;
        IF cand.needs IS NOT NULL THEN
            IF NOT locked THEN
                PERFORM pg_advisory_xact_lock(hashtext('noetl.claim.constrained'));
                locked := true;
            END IF;
            fits := true;
            -- resources: global ones against their capacity, the others against this worker's
            FOR res IN SELECT key AS name, value::integer AS want
                       FROM jsonb_each_text(coalesce(cand.needs -> 'resources', '{}')) LOOP
                SELECT capacity INTO global_cap FROM noetl.global_resource WHERE name = res.name;
                IF NOT held ? res.name THEN
                    SELECT coalesce(sum((c.needs -> 'resources' ->> res.name)::integer), 0) INTO amount
                    FROM noetl.command AS c
                    WHERE c.status = 'leased' AND c.needs IS NOT NULL AND c.needs -> 'resources' ? res.name
                      AND (global_cap IS NOT NULL OR c.worker_id = p_worker);
                    held := held || jsonb_build_object(res.name, amount);
                END IF;
                IF (held ->> res.name)::integer + res.want
                   > coalesce(global_cap, (p_capacity ->> res.name)::integer, 0) THEN
                    fits := false;
                END IF;
            END LOOP;
            -- concurrency key limit
            IF fits AND cand.needs ? 'key_limit' AND cand.concurrency_key IS NOT NULL THEN
                IF NOT keys ? cand.concurrency_key THEN
                    keys := keys || jsonb_build_object(cand.concurrency_key, (
                        SELECT count(*) FROM noetl.command AS c
                        WHERE c.status = 'leased' AND c.needs IS NOT NULL
                          AND c.concurrency_key = cand.concurrency_key));
                END IF;
                IF (keys ->> cand.concurrency_key)::integer >= (cand.needs ->> 'key_limit')::integer THEN
                    fits := false;
                END IF;
            END IF;
            -- execution admission under the playbook's max_concurrent_executions
            v_gate := cand.needs ->> 'gate';
            IF fits AND v_gate IS NOT NULL AND NOT cand.execution_id = ANY(admitted)
               AND NOT EXISTS (SELECT 1 FROM noetl.admission WHERE execution_id = cand.execution_id) THEN
                IF NOT gates ? v_gate THEN
                    gates := gates || jsonb_build_object(v_gate, (
                        SELECT count(*) FROM noetl.admission AS a JOIN noetl.execution AS e USING (execution_id)
                        WHERE a.gate = v_gate AND e.status = 'RUNNING'));
                END IF;
                IF (gates ->> v_gate)::integer >= (cand.needs ->> 'gate_limit')::integer THEN
                    fits := false;
                ELSE
                    INSERT INTO noetl.admission (execution_id, gate) VALUES (cand.execution_id, v_gate)
                    ON CONFLICT DO NOTHING;
                    admitted := admitted || cand.execution_id;
                    gates := jsonb_set(gates, ARRAY[v_gate], to_jsonb((gates ->> v_gate)::integer + 1));
                END IF;
            END IF;
            CONTINUE WHEN NOT fits;
            FOR res IN SELECT key AS name, value::integer AS want
                       FROM jsonb_each_text(coalesce(cand.needs -> 'resources', '{}')) LOOP
                held := jsonb_set(held, ARRAY[res.name], to_jsonb((held ->> res.name)::integer + res.want));
            END LOOP;
            IF cand.concurrency_key IS NOT NULL AND keys ? cand.concurrency_key THEN
                keys := jsonb_set(keys, ARRAY[cand.concurrency_key],
                                  to_jsonb((keys ->> cand.concurrency_key)::integer + 1));
            END IF;
        END IF;
        taken := taken || cand.command_id;
    END LOOP;
    RETURN QUERY
    UPDATE noetl.command
    SET status = 'leased', worker_id = p_worker, attempt = attempt + 1,
        lease_until = now() + make_interval(secs => p_lease), updated_at = now()
    WHERE command_id = ANY(taken)
    RETURNING *;
END
$$;

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

-- ---- 0006_event_export: exporters read the log in commit order, after their own cursor ---------
-- Exporters read the event log in commit order, after a durable cursor of their own.
--
-- Event ids are per execution, so the log has no global order by itself. `tx` is the id of the
-- transaction that wrote the row: an exporter reads only rows whose transaction is older than every
-- transaction of this database still running, so no row can later appear behind its cursor, and
-- orders by (tx, execution_id, event_id), which never changes once a row is visible.
ALTER TABLE noetl.event ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX event_export_idx ON noetl.event (tx, execution_id, event_id);

-- One row per export sink: the last event it has (at least once), and how it is doing.
CREATE TABLE noetl.export_cursor (
    sink text PRIMARY KEY,
    tx xid8 NOT NULL DEFAULT '0',
    execution_id bigint NOT NULL DEFAULT 0,
    event_id bigint NOT NULL DEFAULT 0,
    exported bigint NOT NULL DEFAULT 0,             -- events delivered so far (re-deliveries count)
    last_error text,                                -- the last failure, until a batch succeeds
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- ---- 0007_worker_metrics: workers' metrics reported through the registry ---------------------
-- Workers without a metrics push endpoint report their metrics (Prometheus text) with each
-- heartbeat; the server's /metrics serves those of live workers (noetl.telemetry.metrics).
ALTER TABLE noetl.runtime ADD COLUMN metrics text;

-- ---- 0008_waits: waiting commands hold no slot; finished commands keep no context -------------
-- Commands that wait hold no worker slot, and finished commands keep no context (issue 19).
--
-- A command whose task waits for something that needs no CPU (a sub-playbook's end; later a timer
-- or an external event) ends its run in status 'waiting': no lease, no worker. What it waits for
-- wakes it (back to 'ready', with the attempt it used given back): the end of the child execution
-- in the transaction that records it, or the reaper once wake_at has passed (a timeout). It then
-- runs again and finds what it waited for ready.
--
-- A finished command (done, failed, cancelled) never runs again: its context (the render context
-- snapshot, often the largest part of the row) is dropped by the statement that finishes it, and
-- its outcome by the one that records it. Existing rows are compacted here once.
ALTER TABLE noetl.command DROP CONSTRAINT command_status_check;
ALTER TABLE noetl.command ADD CONSTRAINT command_status_check
    CHECK (status IN ('ready', 'leased', 'waiting', 'done', 'failed', 'cancelled'));
ALTER TABLE noetl.command ADD COLUMN wake_at timestamptz;
CREATE INDEX command_waiting_idx ON noetl.command (wake_at) WHERE status = 'waiting';

-- 0009: who an execution runs for (the root principal; children copy their parent's).
ALTER TABLE noetl.execution ADD COLUMN principal jsonb;
