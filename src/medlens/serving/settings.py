"""The options of ``medlens serve``, checked before anything starts.

A bad option is one line naming it (``--port 70000``, ``--db nosuch://x``, ``--data-dir`` naming a file,
``--workers -1``), raised before the data folder, the database, the worker or the web server is touched:
nothing is written and no server prints a traceback. :meth:`ServeSettings.check` holds the checks that need
no network; :func:`check_listen` tries the address the server will listen on.
"""

from __future__ import annotations

import errno
import importlib.util
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from medlens.errors import MedlensError
from medlens.serving.uploads import Limits

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_WORKERS = 64
QUEUE_SCHEMES = ("redis://", "rediss://")


@dataclass
class ServeSettings:
    """Options of ``medlens serve``."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    db_url: str | None = None
    queue_url: str | None = None
    workers: int = 1
    allow_paths: list[Path] = field(default_factory=list)
    max_upload_mb: float = 2048.0
    max_image_mb: float = 64.0
    no_auth: bool = False
    immediate_jobs: bool = False  # tests: jobs run inside the request

    @property
    def limits(self) -> Limits:
        return Limits(
            max_upload_bytes=int(self.max_upload_mb * 2**20), max_image_bytes=int(self.max_image_mb * 2**20)
        )

    def check(self) -> None:
        """Refuse an option the server cannot start with, naming it; touches nothing.

        Raises:
            MedlensError: the first bad option.
        """
        if self.no_auth and self.host not in LOOPBACK:
            raise MedlensError(
                f"--no-auth is refused on host {self.host}: anyone who reaches it could use it; serve on "
                "127.0.0.1 or keep the token"
            )
        _check_data_dir(Path(self.data_dir))
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise MedlensError(f"--port must be a port number from 1 to 65535; got {self.port}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int):
            raise MedlensError(f"--workers must be a whole number; got {self.workers!r}")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise MedlensError(
                f"--workers must be from 0 to {MAX_WORKERS} (0: no worker here; run python -m "
                f"medlens.serving.worker apart); got {self.workers}"
            )
        for name, value in (("--max-upload-mb", self.max_upload_mb), ("--max-image-mb", self.max_image_mb)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise MedlensError(f"{name} must be a number of MB; got {value!r}")
            if not 0 < value <= 2**20:
                raise MedlensError(f"{name} must be more than 0 MB and at most 1 TB; got {value:g}")
        for root in self.allow_paths:
            if not Path(root).is_dir():
                raise MedlensError(
                    f"--allow-path {root} is not a folder; give an existing folder under which datasets may "
                    "be registered"
                )
        check_db_url(self.db_url)
        check_queue_url(self.queue_url)


def _check_data_dir(data_dir: Path) -> None:
    """The data folder is a folder, or can be made: its nearest existing parent is a writable folder."""
    where = data_dir if data_dir.exists() else next((p for p in data_dir.parents if p.exists()), Path("."))
    if not where.is_dir():
        what = f"{data_dir} is a file" if where == data_dir else f"{where} (above it) is a file"
        raise MedlensError(
            f"--data-dir {data_dir}: {what}, not a folder; give a folder for the service's database, uploads "
            "and runs"
        )
    if not os.access(where, os.W_OK | os.X_OK):
        raise MedlensError(f"--data-dir {data_dir}: {where} is not writable; give a folder you can write to")


def check_db_url(url: str | None) -> None:
    """A database URL SQLAlchemy can use with an installed driver (None: SQLite in the data folder).

    Raises:
        MedlensError: an unparsable URL, an unknown database kind, or a driver that is not installed.
    """
    if url is None:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from medlens.serving.db import database_url

    try:
        parsed = make_url(database_url(Path("."), url))
        dialect = parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise MedlensError(
            f"--db {_shown(url)} is not a database URL medlens knows; give postgresql://USER@HOST/DB or "
            "sqlite:///PATH (or leave it out for SQLite in the data folder)"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        extra = " (pip install medlens[postgres])" if parsed.get_backend_name() == "postgresql" else ""
        raise MedlensError(
            f"--db {_shown(url)} needs the Python driver {err.name or parsed.get_driver_name()!r}, which is "
            f"not installed{extra}"
        ) from None


def open_database(url: str, given: str | None) -> None:
    """Create or upgrade the schema at ``url``, or say in one line why the database cannot be opened.

    Args:
        url: the SQLAlchemy URL (from :func:`medlens.serving.db.database_url`).
        given: the ``--db`` option as the user wrote it (None: SQLite in the data folder).

    Raises:
        MedlensError: the server is unreachable, the login refused, the file not a database, ...
    """
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from medlens.serving.db import upgrade

    try:
        upgrade(url)
    except (SQLAlchemyError, CommandError) as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        where = f"--db {_shown(given)}" if given else url.removeprefix("sqlite:///")
        raise MedlensError(
            f"cannot open the database {where}: {reason}; check the URL, that the database server runs and "
            "that this user may connect (or leave --db out for SQLite in the data folder)"
            if given
            else f"cannot open the database {where}: {reason}; move it aside to start a new one"
        ) from None


def check_queue_url(url: str | None) -> None:
    """A Redis URL for the job queue (None: Huey's SQLite queue in the data folder).

    Raises:
        MedlensError: another scheme, or no ``redis`` package to reach it with.
    """
    if url is None:
        return
    if not url.startswith(QUEUE_SCHEMES) or len(url) <= len("redis://"):
        raise MedlensError(
            f"--queue {_shown(url)} is not a Redis URL; give redis://HOST[:PORT][/DB] (or leave it out for "
            "the queue in the data folder)"
        )
    if importlib.util.find_spec("redis") is None:
        raise MedlensError(f"--queue {_shown(url)} needs the Python package 'redis' (pip install redis)")


def check_listen(host: str, port: int) -> None:
    """Try to listen on ``host:port`` (then let go), so that a busy port or a foreign address is one line
    before anything starts, not the web server's traceback once everything has.

    Raises:
        MedlensError: the address cannot be resolved, is not this machine's, the port is in use or needs
            privileges.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError, OverflowError) as err:
        raise MedlensError(f"--host {host} is not an address this machine can listen on ({err})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server does
        try:
            sock.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise MedlensError(
                    f"--port {port} on {host} is in use by another program; choose another port"
                ) from None
            if err.errno == errno.EACCES:
                raise MedlensError(
                    f"--port {port} needs administrator rights; choose a port above 1023"
                ) from None
            raise MedlensError(f"cannot listen on --host {host} --port {port}: {err.strerror}") from None


def _shown(url: str) -> str:
    """A URL as a message may show it: its password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: shown as given, cut short
        return url[:200]
