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
UPDATE noetl.command SET context = '{}'::json WHERE status IN ('done', 'failed', 'cancelled');
UPDATE noetl.command SET outcome = NULL WHERE recorded AND outcome IS NOT NULL;
