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
