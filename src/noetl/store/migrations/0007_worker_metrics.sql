-- Workers without a metrics push endpoint report their metrics (Prometheus text) with each
-- heartbeat; the server's /metrics serves those of live workers (noetl.telemetry.metrics).
ALTER TABLE noetl.runtime ADD COLUMN metrics text;
