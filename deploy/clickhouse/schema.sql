-- The NoETL event export schema for ClickHouse (18.16 and later). The exporter creates it when it
-- starts; operators may apply it themselves (deploy/clickhouse/schema.sql is this file).
--
-- Delivery is at least once: an event sent twice is two rows until ClickHouse merges them. The
-- table is a ReplacingMergeTree keyed by (execution_id, event_id), so a query with FINAL, and every
-- view below, counts each event once.

CREATE TABLE IF NOT EXISTS noetl.events (
    execution_id UInt64,
    event_id UInt64,
    event_type String,
    step String,
    command_id String,
    playbook_path String,
    catalog_id UInt64,
    parent_execution_id UInt64,
    status String,
    tool_kind String,
    pool String,
    worker_id String,
    attempt UInt32,
    tries UInt32,
    loop_index Int64,
    duration_ms Nullable(Float64),
    error_kind String,
    error_message String,
    at DateTime,
    at_seconds Float64,
    created_at DateTime,
    exported_at UInt64,
    data String
) ENGINE = ReplacingMergeTree(exported_at)
PARTITION BY toYYYYMM(at)
ORDER BY (execution_id, event_id);

-- Call durations per playbook and step (a call is one run of a step's tools, or of one loop item).
CREATE VIEW IF NOT EXISTS noetl.step_durations AS
SELECT playbook_path, step, count() AS calls,
       quantile(0.5)(duration_ms) AS p50_ms, quantile(0.95)(duration_ms) AS p95_ms, max(duration_ms) AS max_ms
FROM noetl.events FINAL
WHERE event_type IN ('call.done', 'call.error')
GROUP BY playbook_path, step;

-- Failure rates per playbook and step.
CREATE VIEW IF NOT EXISTS noetl.step_failures AS
SELECT playbook_path, step, count() AS calls, countIf(event_type = 'call.error') AS failures,
       countIf(event_type = 'call.error') / count() AS failure_rate
FROM noetl.events FINAL
WHERE event_type IN ('call.done', 'call.error')
GROUP BY playbook_path, step;

-- Executions started and ended per hour and playbook.
CREATE VIEW IF NOT EXISTS noetl.executions_per_hour AS
SELECT toStartOfHour(at) AS hour, playbook_path,
       countIf(event_type = 'playbook.initialized') AS started,
       countIf(event_type = 'playbook.completed') AS completed,
       countIf(event_type = 'playbook.failed') AS failed,
       countIf(event_type = 'playbook.cancelled') AS cancelled
FROM noetl.events FINAL
WHERE event_type IN ('playbook.initialized', 'playbook.completed', 'playbook.failed', 'playbook.cancelled')
GROUP BY hour, playbook_path;
