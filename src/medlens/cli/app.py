"""The Typer app every command registers on, its global options, shared option constants, the
console, and ``main``: a MedlensError is one line and exit 2, any other exception one line naming a
log file with its traceback and exit 1."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from typer import rich_utils
from typer.exceptions import Abort, TyperException

from medlens.errors import MedlensError
from medlens.utils.threads import apply_threads

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="medlens: ingest, audit, train, evaluate and compare medical image models.",
)

SRC_HELP = (
    "Dataset: class folders (ROOT/<class>/<img> or ROOT/<split>/<class>/<img>), a CSV (image,label), "
    "a manifest CSV, a MedMNIST .npz; for segmentation/detection image/mask pairs (kaggle_3m folders, a CSV "
    "with image,mask), NIfTI imagesTr/labelsTr folders, an MSD dataset.json or a CSV image,x0,y0,x1,y1."
)
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.")
MAX_MB_HELP = (
    "Refuse (and skip, inside a dataset) any file whose header declares more than this many MiB once "
    "decoded, checked before decoding (default 512)."
)
MAX_MB = typer.Option(None, "--max-image-mb", help=MAX_MB_HELP)


def _console(stderr: bool = False):
    """The console of every command's output: full lines when piped (medlens.utils.console)."""
    from medlens.utils.console import console

    return console(stderr=stderr)


def main() -> None:
    """Run the app: a MedlensError is one line and exit 2; any other exception one line naming a log file
    that holds its traceback, and exit 1 (``--debug`` or ``MEDLENS_DEBUG=1`` print the traceback instead)."""
    _STATE["debug"] = False
    try:
        # not standalone: click would turn an EOFError raised anywhere inside a command (a reader meeting
        # a cut-off file, say) into a bare "Aborted!" and exit 1, hiding what failed
        code = app(standalone_mode=False)
    except Abort as abort:
        if isinstance(abort.__cause__, EOFError):
            _internal_error(abort.__cause__)
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except TyperException as err:  # usage errors (click's exceptions): typer's own rendering, exit 2
        rich_utils.rich_format_error(err)
        sys.exit(err.exit_code)
    except MedlensError as err:
        if _debug():
            import traceback

            traceback.print_exc()
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:
        _internal_error(err)
    if code == 130:  # typer answers Ctrl-C with Exit(130)
        typer.echo("interrupted", err=True)
    # a command's return value is not an exit status; only typer.Exit's code (an int) is
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


_STATE = {"debug": False}


@app.callback()
def _options(
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Print the full traceback of an unexpected error instead of "
        "writing it to a log file (also MEDLENS_DEBUG=1).",
    ),
    threads: str | None = typer.Option(
        None,
        "--threads",
        help="CPU threads for torch (also MEDLENS_THREADS; default: OMP_NUM_THREADS if set, else the "
        "physical cores minus one, which keeps training fast beside other busy programs). The count changes "
        "the order of floating-point sums: give the same one to reproduce a model on another machine.",
    ),
) -> None:
    _STATE["debug"] = debug
    apply_threads(threads)


def _debug() -> bool:
    import os

    return _STATE["debug"] or os.environ.get("MEDLENS_DEBUG", "").strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
    )


def _command_name(argv: list[str]) -> str:
    """The subcommand from the command line ("train", "convert slices-to-volumes"), for messages and logs."""
    words = [a for a in argv if not a.startswith("-")]
    if not words:
        return ""
    return " ".join(words[:2]) if words[0] == "convert" and len(words) > 1 else words[0]


def _internal_error(err: BaseException) -> None:
    """Print one line naming the exception and the log file with its traceback; exit 1."""
    import traceback

    cmd = _command_name(sys.argv[1:])
    if _debug():
        traceback.print_exc()
        typer.echo(f"internal error in medlens {cmd}: {type(err).__name__}; please report it", err=True)
        sys.exit(1)
    message = str(err).strip()
    what = type(err).__name__ + (f": {message.splitlines()[0]}" if message else "")
    log = _write_log(cmd, traceback.format_exc())
    where = f"traceback in {log}" if log else "the traceback could not be saved (run with --debug to see it)"
    typer.echo(f"internal error in medlens {cmd}: {what} — {where}; please report it", err=True)
    sys.exit(1)


def _write_log(cmd: str, text: str) -> Path | None:
    """Write the traceback to $XDG_CACHE_HOME/medlens/logs (default ~/.cache), else the temp dir; its path."""
    import os
    import platform
    import re
    import tempfile
    from datetime import datetime

    from medlens import __version__

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', cmd) or 'medlens'}-{os.getpid()}.log"
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    body = (
        f"medlens {__version__}, Python {platform.python_version()}, {platform.platform()}\n"
        f"command: {' '.join(['medlens', *sys.argv[1:]])}\ntime: {datetime.now().isoformat()}\n\n{text}"
    )
    for folder in (Path(cache) / "medlens" / "logs", Path(tempfile.gettempdir()) / "medlens-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(body, encoding="utf-8")
            return path
        except OSError:
            continue
    return None
