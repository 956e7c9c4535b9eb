-- Who an execution runs for: the principal that started the root of its tree ({name, role, paths},
-- as the gateway authenticated it). Sub-playbooks copy their parent's, and may start only
-- playbooks whose path those paths allow (noetl.runtime.authz). NULL: started before this
-- migration, or by the service itself (a schedule, a trigger, the CLI with the service token).
ALTER TABLE noetl.execution ADD COLUMN principal jsonb;
