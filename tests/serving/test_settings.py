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
