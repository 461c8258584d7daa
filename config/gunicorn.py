"""gunicorn settings for serving entityflow: `gunicorn -c config/gunicorn.py config.wsgi`.

Sync workers, one more than the machine has cores (GUNICORN_WORKERS overrides it). A
sync worker sits idle while PostgreSQL flushes the run a request wrote and while Redis
takes its doorbell: with one worker per core, a third of a 2-core machine stayed idle
under the API benchmark (`python -m bench --only api`); the extra worker fills those
waits. More than that bought nothing there, and each worker costs its own memory and
database connection. Put a buffering proxy (nginx) in front for slow clients, as
gunicorn's documentation says for sync workers.

A sync worker holds one request at a time, so it holds one synchronous reply (`?wait=`,
docs/operating.md "Synchronous replies") at a time, and serves nothing else meanwhile.
GUNICORN_THREADS=N switches to threaded workers (gthread) of N threads each: a waiting
request holds a thread but no database connection, so workers x N requests can wait at
once, but give each worker threads for all of them: connections are not spread evenly
(tests/reliability/test_sync_reply_capacity.py: 200 on 2 workers of 210 threads).
The default stays sync: for plain API traffic gthread was slower (docs/operating.md).

Like config/wsgi.py, it picks the production settings unless DJANGO_SETTINGS_MODULE is
set, so the workers it starts never run with DEBUG on by accident.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS") or (os.cpu_count() or 1) + 1)
threads = int(os.environ.get("GUNICORN_THREADS") or 1)
worker_class = "gthread" if threads > 1 else "sync"
# gunicorn restarts a sync worker that has not checked in for `timeout` seconds, and a
# sync worker does not check in while it serves a request. Its default, 30 s, is the
# longest synchronous reply itself: such a request could be cut off without an answer.
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 60)
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")


def post_worker_init(worker):
    """Once the worker has loaded Django: what is alive now (settings, models, the
    registry, compiled statements) lives as long as the worker, so it is moved out of
    the garbage collector's reach (`gc.freeze`). Otherwise every full collection walks
    all of it again: about 160,000 objects, 0.08-0.11 s of CPU each time, which on
    the API trigger came once every 1,000 to 2,000 requests, 0.04-0.11 ms a request
    (docs/performance.md, "The API trigger on SQLite: the least a trigger
    can cost"). What the worker allocates later is collected as before."""
    import gc

    gc.collect()
    gc.freeze()
