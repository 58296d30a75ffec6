"""The job worker: ``python -m medlens.serving.worker --data-dir DIR [--db URL] [--queue URL] [--workers N]``.

``medlens serve`` starts it beside the web server; it can also run alone (another terminal or machine sharing
the database and the queue). At start it resolves jobs a killed worker left marked running
(:func:`medlens.serving.jobs.recover`), then consumes the Huey queue with N worker processes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medlens.errors import MedlensError
from medlens.serving.db import database_url, make_engine, session_factory
from medlens.serving.jobs import QueueConfig, make_huey, recover
from medlens.serving.settings import ServeSettings, open_database
from medlens.utils.threads import default_threads, requested_threads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m medlens.serving.worker", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default SQLite in the data folder)")
    parser.add_argument("--queue", default=None, help="redis://... (default Huey's SQLite queue)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="stop when this process (medlens serve) is gone"
    )
    args = parser.parse_args(argv)
    if args.parent_pid:
        _follow(args.parent_pid)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    data_dir = args.data_dir.resolve()
    url = database_url(data_dir, args.db)
    try:  # the options of medlens serve, checked the same way: one line, exit 2
        ServeSettings(data_dir, db_url=args.db, queue_url=args.queue, workers=args.workers).check()
        if args.workers < 1:
            raise MedlensError(f"--workers must be at least 1 for a worker process; got {args.workers}")
        data_dir.mkdir(parents=True, exist_ok=True)
        open_database(url, args.db)
        _share_cores(args.workers)
    except MedlensError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    huey = make_huey(QueueConfig(data_dir, url, args.queue))
    with session_factory(make_engine(url))() as db:
        touched = recover(db, huey)
    if touched:
        logging.info("recovered jobs left running by a stopped worker: %s", touched)
    consumer = huey.create_consumer(workers=args.workers, worker_type="process")
    consumer.run()


def _share_cores(workers: int) -> None:
    """Split medlens's thread count (``MEDLENS_THREADS``, else ``OMP_NUM_THREADS``, else the physical cores
    minus one: medlens.utils.threads) between the ``workers`` job processes, through ``OMP_NUM_THREADS``
    that they inherit, so that N jobs do not run N times the threads that wait on each other. Fixed by the
    core count, never by the load."""
    import os

    total = requested_threads()
    if total is None:
        own = os.environ.get("OMP_NUM_THREADS", "").strip()
        total = int(own) if own.isdigit() and int(own) > 0 else default_threads()
    os.environ["OMP_NUM_THREADS"] = str(max(1, total // workers))


def _follow(parent: int, every_s: float = 2.0) -> None:
    """Stop this worker and its Huey processes (its own process group) once ``parent`` is gone: a server
    killed outright (or stopped by a signal that skips its cleanup) must not leave workers behind."""
    import os
    import signal
    import threading
    import time

    from medlens.serving.jobs import pid_alive

    def watch() -> None:
        while pid_alive(parent) and os.getppid() == parent:
            time.sleep(every_s)
        logging.info("medlens serve (pid %s) is gone; stopping the worker", parent)
        os.killpg(os.getpgid(0), signal.SIGTERM)
        time.sleep(10)
        os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="follow-server", daemon=True).start()


if __name__ == "__main__":
    main()
