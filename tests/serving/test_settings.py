"""The options of the service are checked before anything is written, through the Python API as through
``medlens serve`` (tests/badinput/cases_serve.py runs the CLI)."""

from __future__ import annotations

import re
import socket

import pytest

from medlens.errors import MedlensError
from medlens.serving.service import ServeSettings, Service
from medlens.serving.settings import check_listen


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"port": 70000}, "--port must be a port number from 1 to 65535"),
        ({"workers": -1}, "--workers must be from 0 to 64"),
        ({"max_upload_mb": -1}, "--max-upload-mb must be more than 0 MB"),
        ({"max_image_mb": float("nan")}, "--max-image-mb must be a number of MB"),
        ({"db_url": "nosuch://x"}, "--db nosuch://x is not a database URL"),
        ({"db_url": "nosuch://me:hunter2@db/x"}, "--db nosuch://me:***@db/x is not a database URL"),
        ({"queue_url": "ftp://q"}, "--queue ftp://q is not a Redis URL"),
    ],
)
def test_a_bad_option_is_one_line_and_nothing_is_written(tmp_path, options, message):
    with pytest.raises(MedlensError, match=re.escape(message)) as info:
        Service(ServeSettings(data_dir=tmp_path / "d", **options))
    assert "\n" not in str(info.value) and "hunter2" not in str(info.value)
    assert not (tmp_path / "d").exists()


def test_a_data_dir_that_is_a_file_is_named(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(MedlensError, match="is a file, not a folder"):
        Service(ServeSettings(data_dir=tmp_path / "f"))
    with pytest.raises(MedlensError, match=r"\(above it\) is a file"):
        Service(ServeSettings(data_dir=tmp_path / "f" / "d"))


def test_a_port_in_use_is_named_before_the_server_starts():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(MedlensError, match=f"--port {port} on 127.0.0.1 is in use"):
            check_listen("127.0.0.1", port)
    check_listen("127.0.0.1", port)  # free again


@pytest.mark.parametrize(
    ("options", "message"),
    [(["--db", "nosuch://x"], "--db nosuch://x is not a database URL"), (["--workers", "0"], "--workers")],
)
def test_the_worker_alone_checks_its_options_the_same_way(tmp_path, options, message):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "medlens.serving.worker", "--data-dir", str(tmp_path / "d"), *options]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "d").exists()


def test_a_database_that_cannot_be_opened_is_one_line(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "medlens.db").write_text("not SQLite")
    with pytest.raises(MedlensError, match="file is not a database; move it aside"):
        Service(ServeSettings(data_dir=tmp_path / "old"))
    with pytest.raises(MedlensError, match="cannot open the database --db sqlite:///"):
        Service(ServeSettings(data_dir=tmp_path / "d", db_url=f"sqlite:///{tmp_path}/no/such/x.db"))
    assert not (tmp_path / "d").exists()
