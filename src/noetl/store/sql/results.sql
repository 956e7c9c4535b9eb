-- name: put
INSERT INTO noetl.result (ref, execution_id, step, data, size_bytes)
VALUES (%(ref)s, %(execution_id)s, %(step)s, %(data)s::json, %(size_bytes)s)
ON CONFLICT (ref) DO UPDATE
SET execution_id = excluded.execution_id, step = excluded.step, data = excluded.data,
    size_bytes = excluded.size_bytes

-- name: get
SELECT data FROM noetl.result WHERE ref = %(ref)s
