"""The ``serve`` command: the web app and JSON API."""

from __future__ import annotations

from pathlib import Path

import typer

from medlens.cli.app import _console, app
from medlens.errors import MedlensError


@app.command()
def serve(
    data_dir: Path = typer.Option(
        Path("medlens-data"), "--data-dir", help="Folder of the service's database, uploads and runs."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    db: str | None = typer.Option(
        None, help="Database URL (default SQLite DATA_DIR/medlens.db), e.g. postgresql://user@host/medlens."
    ),
    queue: str | None = typer.Option(None, help="Job queue URL redis://... (default Huey's SQLite queue)."),
    workers: int = typer.Option(
        1, help="Job worker processes (0: none here; run python -m medlens.serving.worker)."
    ),
    allow_path: list[Path] = typer.Option(
        [], "--allow-path", help="A folder under which datasets may be registered by path (repeatable)."
    ),
    run: list[Path] = typer.Option(
        [], "--run", help="Copy this CLI run folder into the service (repeatable; default: ./medlens-demo)."
    ),
    max_upload_mb: float = typer.Option(2048.0, help="Largest upload (a dataset zip), in MB."),
    max_image_mb: float = typer.Option(64.0, help="Largest single image or study file, in MB."),
    no_auth: bool = typer.Option(False, "--no-auth", help="No token (refused unless the host is 127.0.0.1)."),
) -> None:
    """Web app and JSON API: upload datasets and studies, train, read reports, explanations, the worklist."""
    from medlens.serving.run import serve as do_serve
    from medlens.serving.service import ServeSettings

    if no_auth and host not in ("127.0.0.1", "localhost", "::1"):
        raise MedlensError(f"--no-auth is refused on host {host}; serve on 127.0.0.1 or keep the token")
    settings = ServeSettings(
        data_dir=data_dir,
        host=host,
        port=port,
        db_url=db,
        queue_url=queue,
        workers=workers,
        allow_paths=list(allow_path),
        max_upload_mb=max_upload_mb,
        max_image_mb=max_image_mb,
        no_auth=no_auth,
    )
    do_serve(
        settings,
        import_runs=list(run),
        echo=lambda line: _console().print(line, highlight=False, soft_wrap=True),
    )
