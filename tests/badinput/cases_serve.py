"""Hostile-input cases of the second probe: serve (see docs/robustness.md, "Second probe: serve").

Every option of ``medlens serve`` is checked before anything starts: one line, exit 2, no web server
traceback, and the data folder never made.
"""

from __future__ import annotations

import socket

from badinput.cases import Ctx, case, one_line_error

_HELD: list[socket.socket] = []  # sockets a case keeps listening while medlens runs


def serve(ctx: Ctx, *options) -> list:
    return ["serve", "--data-dir", ctx.tmp / "d", "--workers", "0", *options]


def nothing_written(ctx: Ctx, out: str) -> None:
    one_line_error(ctx, out)
    assert not (ctx.tmp / "d").exists(), "the data folder was made"
    assert not any(ctx.tmp.rglob("*.db")), "a database was written"


def _file(ctx: Ctx, name: str = "afile") -> str:
    path = ctx.tmp / name
    path.write_text("not a folder\n")
    return str(path)


def _busy_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    _HELD.append(sock)
    return sock.getsockname()[1]


case("srv-data-dir-file", 2, "is a file, not a folder", check=one_line_error)(
    lambda ctx: ["serve", "--data-dir", _file(ctx), "--workers", "0"]
)
case("srv-data-dir-under-file", 2, "(above it) is a file, not a folder", check=one_line_error)(
    lambda ctx: ["serve", "--data-dir", f"{_file(ctx)}/data", "--workers", "0"]
)
case("srv-port-70000", 2, "--port must be a port number from 1 to 65535; got 70000", check=nothing_written)(
    lambda ctx: serve(ctx, "--port", "70000")
)
case("srv-port-0", 2, "--port must be a port number from 1 to 65535; got 0", check=nothing_written)(
    lambda ctx: serve(ctx, "--port", "0")
)
case("srv-port-in-use", 2, "is in use by another program; choose another port", check=nothing_written)(
    lambda ctx: serve(ctx, "--port", str(_busy_port()))
)
case("srv-host-unknown", 2, "--host no.such.host.invalid is not an address", check=nothing_written)(
    lambda ctx: serve(ctx, "--host", "no.such.host.invalid")
)
case(
    "srv-db-unknown-scheme", 2, "--db nosuch://x is not a database URL medlens knows", check=nothing_written
)(lambda ctx: serve(ctx, "--db", "nosuch://x"))
case("srv-db-not-a-url", 2, "is not a database URL medlens knows", check=nothing_written)(
    lambda ctx: serve(ctx, "--db", "just words")
)
case("srv-queue-not-redis", 2, "--queue http://x is not a Redis URL", check=nothing_written)(
    lambda ctx: serve(ctx, "--queue", "http://x")
)
case("srv-max-upload-mb-negative", 2, "--max-upload-mb must be more than 0 MB", check=nothing_written)(
    lambda ctx: serve(ctx, "--max-upload-mb", "-1")
)
case("srv-max-upload-mb-inf", 2, "--max-upload-mb must be a number of MB; got inf", check=nothing_written)(
    lambda ctx: serve(ctx, "--max-upload-mb", "inf")
)
case("srv-max-image-mb-zero", 2, "--max-image-mb must be more than 0 MB", check=nothing_written)(
    lambda ctx: serve(ctx, "--max-image-mb", "0")
)
case("srv-workers-negative", 2, "--workers must be from 0 to 64", check=nothing_written)(
    lambda ctx: ["serve", "--data-dir", ctx.tmp / "d", "--workers", "-1"]
)
case("srv-allow-path-missing", 2, "--allow-path", check=nothing_written)(
    lambda ctx: serve(ctx, "--allow-path", ctx.tmp / "nosuch")
)
case("srv-run-not-a-run", 2, "is not a run folder (no model.pt)", check=nothing_written)(
    lambda ctx: serve(ctx, "--run", ctx.tmp)
)
case("srv-no-auth-public-host", 2, "--no-auth is refused on host 0.0.0.0", check=nothing_written)(
    lambda ctx: serve(ctx, "--no-auth", "--host", "0.0.0.0")
)


def _corrupt_db(ctx: Ctx) -> list:
    (ctx.tmp / "old").mkdir()
    (ctx.tmp / "old" / "medlens.db").write_text("garbage, not SQLite\n")
    return ["serve", "--data-dir", ctx.tmp / "old", "--workers", "0"]


case(
    "srv-db-sqlite-no-folder",
    2,
    "cannot open the database --db sqlite:////nonexistent",
    check=nothing_written,
)(lambda ctx: serve(ctx, "--db", "sqlite:////nonexistent/medlens/x.db"))
case(
    "srv-data-dir-corrupt-db",
    2,
    "medlens.db: file is not a database; move it aside",
    check=one_line_error,
)(_corrupt_db)
