"""The service on a real PostgreSQL server (Debian's `postgresql`, a throwaway cluster on a loopback port):
the Alembic migrations, predict, the worklist, a read and the kappa, unchanged from SQLite."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import medlens
from medlens.serving.app import create_app
from medlens.serving.service import ServeSettings

TOKEN = "pg-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql); .ci/run installs it")
    # not under pytest's tmp folder: it is private to this user, and the cluster may run as another one
    root = Path(tempfile.mkdtemp(prefix="medlens-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the cluster as the postgres user
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to own the test cluster")
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        for _ in range(50):
            if (
                subprocess.run(
                    [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
                ).returncode
                == 0
            ):
                break
            time.sleep(0.2)
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "medlens"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/medlens"
    finally:
        subprocess.run(
            [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_the_service_runs_on_postgresql(postgres_url, tmp_path, make_folders, monkeypatch):
    data = make_folders(tmp_path / "src", n_per_class=8, size=32)
    medlens.train(
        data, tmp_path / "d" / "runs" / "pg-run", model="cnn-small", epochs=1, image_size=32, progress=False
    )
    monkeypatch.setenv("MEDLENS_API_TOKEN", TOKEN)
    settings = ServeSettings(data_dir=tmp_path / "d", db_url=postgres_url, immediate_jobs=True)
    client = TestClient(create_app(settings))
    assert not (tmp_path / "d" / "medlens.db").exists()  # no SQLite file: the state is in PostgreSQL
    [run] = client.get("/api/runs", headers=AUTH).json()
    image = sorted(data.rglob("*.png"))[0]
    r = client.post(
        f"/api/runs/{run['id']}/predict", headers=AUTH, files={"file": ("a.png", image.read_bytes())}
    )
    assert r.status_code == 200, r.text
    study = r.json()["study"]
    [row] = client.get(f"/api/worklist?run={run['id']}", headers=AUTH).json()
    assert row["study"] == study and row["rank"] == 1
    assert client.post(
        f"/api/worklist/{study}/read", headers=AUTH, json={"reader": "r", "finding": "agree"}
    ).is_success
    assert client.get(f"/api/runs/{run['id']}/agreement", headers=AUTH).json()["n"] == 1
    from sqlalchemy import create_engine, inspect

    from medlens.serving.db import database_url

    tables = set(inspect(create_engine(database_url(tmp_path, postgres_url))).get_table_names())
    assert {"alembic_version", "runs", "jobs", "studies", "predictions", "reads", "audit_log"} <= tables
