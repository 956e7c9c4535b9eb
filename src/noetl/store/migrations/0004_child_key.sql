-- Idempotent sub-playbook starts: a child execution remembers which call of which parent command
-- started it, so a command that runs again (at-least-once execution: its lease expired, a worker
-- died) attaches to the child its first run started instead of starting a second one.
ALTER TABLE noetl.execution ADD COLUMN parent_key text;
CREATE UNIQUE INDEX execution_parent_key_idx ON noetl.execution (parent_execution_id, parent_key)
    WHERE parent_key IS NOT NULL;
