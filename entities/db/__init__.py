"""Generic database plumbing shared by every app: no model and no domain knowledge here.

- `prepared`: statements planned once per PostgreSQL connection (PREPARE/EXECUTE).
- `commits`: commits that need not wait for the disk, and statements run on their own.
- `compiled`: lookups and INSERTs compiled once per database, executed many times.
- `driver`: on SQLite, compiled statements sent on the driver's own handle.
- `db_loss`: a request whose database connection was lost is retried or answered 503.
- `outage`: a worker whose database refuses connections holds its task until it answers.

This package imports only Django (and DRF for db_loss's 503); tests/test_architecture.py
holds it to that. See docs/architecture.md.
"""
