"""noetl.store: the PostgreSQL adapter of the distributed runtime.

One module per table family, each a set of async functions that take an open psycopg connection
first and run one statement each (so they work in autocommit mode and inside a caller's
transaction alike): ``catalog``, ``executions``, ``events`` (the log), ``commands`` (the queue),
``credentials`` (+ ``crypto``), ``workers``, ``results``. ``db`` opens connections, pools and
LISTEN channels; ``migrate`` applies ``migrations/`` (the whole schema reads in ``schema.sql``);
``embedded`` runs a private PostgreSQL under the user's data directory. The SQL itself lives in
``sql/<module>.sql`` as named queries. Driver errors surface as ``noetl.store.errors.StoreError``.
"""
