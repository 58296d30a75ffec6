"""The JSON API through TestClient: the contract paths, upload → train → predict → worklist → read → kappa,
auth on every route but health, and bad uploads answered 4xx with nothing left behind."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from medlens.serving.app import create_app
from medlens.serving.service import ServeSettings

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory, make_folders, one_thread):
    """A service (jobs run inside the request), one dataset uploaded as a zip and one run trained on it."""
    root = tmp_path_factory.mktemp("serve")
    data = make_folders(root / "src", classes=("cyst", "normal"), n_per_class=16, size=32)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(data.rglob("*.png")):
            zf.write(f, f"toy/{f.relative_to(data)}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDLENS_API_TOKEN", TOKEN)
        app = create_app(ServeSettings(data_dir=root / "data", immediate_jobs=True, max_upload_mb=5))
        with TestClient(app) as c:
            r = c.post(
                "/api/datasets", headers=AUTH, files={"file": ("toy.zip", buf.getvalue(), "application/zip")}
            )
            assert r.status_code == 201, r.text
            c.dataset = r.json()
            r = c.post(
                "/api/runs",
                headers=AUTH,
                json={
                    "dataset": c.dataset["id"],
                    "model": "cnn-small",
                    "epochs": 3,
                    "image_size": 32,
                    "name": "toy-run",
                },
            )
            assert r.status_code == 202, r.text
            c.started = r.json()
            c.data, c.images = root / "data", sorted(data.rglob("*.png"))
            yield c


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_health_needs_no_token_and_everything_else_does(client):
    assert client.get("/api/health").json() == {"status": "ok"}
    paths = client.app.openapi()["paths"]
    api = [(m.upper(), p) for p, ops in paths.items() if p.startswith("/api/") for m in ops]
    assert len(api) >= 17
    for method, template in api:
        if template == "/api/health":
            continue
        path = template
        for key, value in (("{run_id}", "1"), ("{job_id}", "1"), ("{study}", "1"), ("{dataset_id}", "1")):
            path = path.replace(key, value)
        path = path.replace("{name}", "report.html") + ("?run=1" if template.endswith("worklist") else "")
        r = client.request(method, path)
        assert r.status_code == 401, (method, path, r.status_code)
        assert "error" in r.json()
        r = client.request(method, path, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401, (method, path)


def test_dataset_upload_audits_and_trains_a_run(client):
    assert client.dataset["n_images"] == 32
    audit = client.get(f"/api/jobs/{client.dataset['audit_job']}", headers=AUTH).json()
    assert audit["state"] == "done", audit
    assert client.get(f"/api/datasets/{client.dataset['id']}/audit", headers=AUTH).status_code == 200
    job = client.get(f"/api/jobs/{client.started['job']}", headers=AUTH).json()
    assert job["state"] == "done" and job["error"] is None, job
    runs = client.get("/api/runs", headers=AUTH).json()
    run = next(r for r in runs if r["id"] == client.started["run"])
    assert {"id", "task", "model", "created", "metrics"} <= set(run)
    assert run["task"] == "classification" and run["model"] == "cnn-small" and "accuracy" in run["metrics"]
    summary = client.get(f"/api/runs/{run['id']}", headers=AUTH).json()
    assert summary["metrics"]["accuracy"]["value"] == pytest.approx(run["metrics"]["accuracy"])
    report = client.get(f"/api/runs/{run['id']}/files/report.html", headers=AUTH)
    assert report.status_code == 200 and "<html" in report.text.lower()
    csp = report.headers["content-security-policy"]
    assert "sandbox" in csp and "script-src" not in csp and "default-src 'none'" in csp
    for escape in ("..%2F..%2Fmedlens.db", "%2e%2e/%2e%2e/medlens.db", "/etc/passwd", "figures/../../../x"):
        r = client.get(f"/api/runs/{run['id']}/files/{escape}", headers=AUTH)
        assert r.status_code in (404, 422) and "error" in r.json(), escape


def test_predict_worklist_read_and_kappa(client):
    run = client.started["run"]
    cyst = next(p for p in client.images if p.parent.name == "cyst")
    normal = next(p for p in client.images if p.parent.name == "normal")
    studies = {}
    for path, extra in ((normal, {"referral_priority": "routine"}), (cyst, {"referral_priority": "stat"})):
        r = client.post(
            f"/api/runs/{run}/predict",
            headers=AUTH,
            files={"file": (f"../../{path.name}", path.read_bytes(), "image/png")},
            data={"patient_id": f"P-{path.stem}", **extra},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {
            "study",
            "prediction",
            "probabilities",
            "calibrated",
            "ood",
            "explanation_png",
            "rationale",
        }
        assert set(body["ood"]) == {"score", "flag"} and body["calibrated"] is False
        png = client.get(body["explanation_png"], headers=AUTH)
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        studies[path.parent.name] = body
    # nothing the user named became a path
    saved = [p.name for p in (client.data / "studies").rglob("*") if p.is_file()]
    assert saved and not any(n in saved for n in (cyst.name, normal.name))

    rows = client.get(f"/api/worklist?run={run}", headers=AUTH).json()
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert {"study", "rank", "priority", "reason", "status"} <= set(rows[0])
    numeric = [r["priority"] for r in rows if not isinstance(r["priority"], str)]
    assert numeric == sorted(numeric, reverse=True)
    order = [r["study"] for r in rows]
    assert order.index(studies["cyst"]["study"]) < order.index(studies["normal"]["study"])  # stat + finding

    cyst_id, normal_id = studies["cyst"]["study"], studies["normal"]["study"]
    r = client.post(
        f"/api/worklist/{cyst_id}/read", headers=AUTH, json={"reader": "dr-a", "finding": "agree"}
    )
    assert r.status_code == 200 and r.json()["agreement"] == 1
    r = client.post(
        f"/api/worklist/{normal_id}/read", headers=AUTH, json={"reader": "dr-a", "finding": "disagree"}
    )
    assert r.json()["agreement"] == 0
    after = {x["study"]: x for x in client.get(f"/api/worklist?run={run}", headers=AUTH).json()}
    assert after[cyst_id]["status"] == "read" and after[normal_id]["status"] == "read"
    kappa = client.get(f"/api/runs/{run}/agreement", headers=AUTH).json()
    assert kappa["n"] == 2 and kappa["agreement"] == 0.5 and kappa["by_reader"]["dr-a"]["n"] == 2
    log = client.get("/api/audit-log", headers=AUTH).json()
    assert log[0]["action"] == "read" and f"study {normal_id} by dr-a: disagree" in log[0]["target"]
    assert {"dataset", "train", "predict"} <= {e["action"] for e in log}
    r = client.post(
        f"/api/worklist/{cyst_id}/read", headers=AUTH, json={"reader": "dr-a", "finding": "maybe"}
    )
    assert r.status_code == 400 and "finding must be one of" in r.json()["error"]


def test_jobs_report_and_cancel(client):
    run = client.started["run"]
    r = client.post(f"/api/runs/{run}/jobs", headers=AUTH, json={"kind": "calibrate"})
    assert r.status_code == 202
    job = client.get(f"/api/jobs/{r.json()['job']}", headers=AUTH).json()
    # the toy model separates its validation cases perfectly: no temperature fits, and the job says why
    assert job["state"] == "failed" and "temperature scaling degenerated" in job["error"], job
    r = client.post(f"/api/jobs/{job['id']}/cancel", headers=AUTH)
    assert r.status_code == 400 and "already failed" in r.json()["error"]
    assert client.get("/api/jobs/99999", headers=AUTH).status_code == 404
    bad = client.post("/api/runs", headers=AUTH, json={"dataset": 1, "epochs": "many"})
    assert bad.status_code == 400 and "error" in bad.json()
    bad = client.post("/api/runs", headers=AUTH, json={"dataset": 1, "rm_rf": True})
    assert bad.status_code == 400 and "unknown training option" in bad.json()["error"]


def _leftovers(client) -> set[str]:
    return {str(p.relative_to(client.data)) for p in client.data.rglob("*") if p.is_file()}


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "payload", "status"),
    [
        ("slip.zip", _zip({"../evil.png": b"x"}), 400),
        ("abs.zip", _zip({"/etc/evil.png": b"x"}), 400),
        ("bomb.zip", _zip({"zeros.png": b"\0" * (40 * 2**20)}), 400),
        ("notzip.zip", b"this is not a zip", 400),
        ("images.tar", b"\0" * 100, 415),
    ],
)
def test_bad_dataset_uploads_are_refused_and_leave_nothing(client, name, payload, status):
    before = _leftovers(client)
    r = client.post("/api/datasets", headers=AUTH, files={"file": (name, payload, "application/zip")})
    assert r.status_code == status, r.text
    assert list(r.json()) == ["error"] and "\n" not in r.json()["error"]
    assert _leftovers(client) == before


def test_an_upload_over_the_cap_is_413_and_leaves_nothing(client):
    before = _leftovers(client)
    big = os.urandom(6 * 2**20)  # the fixture caps uploads at 5 MB
    r = client.post("/api/datasets", headers=AUTH, files={"file": ("big.zip", big, "application/zip")})
    assert r.status_code == 413 and _leftovers(client) == before


def test_bad_studies_are_4xx_and_never_500(client):
    run = client.started["run"]
    for name, payload in (
        ("notes.txt", b"hello"),
        ("scan.exe", b"MZ\0\0"),
    ):
        r = client.post(
            f"/api/runs/{run}/predict", headers=AUTH, files={"file": (name, payload, "text/plain")}
        )
        assert r.status_code in (415, 422) and name in r.json()["error"], (name, r.text)
    corrupt_dicom = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 4
    r = client.post(
        f"/api/runs/{run}/predict",
        headers=AUTH,
        files={"file": ("broken.dcm", corrupt_dicom, "application/dicom")},
    )
    assert (
        r.status_code == 422
        and "broken.dcm" in r.json()["error"]
        and "/" not in r.json()["error"].split(":")[0]
    )
    r = client.post(
        f"/api/runs/{run}/predict",
        headers=AUTH,
        files={"file": ("ok.png", _png(np.zeros((32, 32), np.uint8)), "image/png")},
        data={"study_time": "yesterday"},
    )
    assert r.status_code == 400 and "study_time" in r.json()["error"]
    assert (
        client.post("/api/runs/999/predict", headers=AUTH, files={"file": ("a.png", b"x")}).status_code == 404
    )
    r = client.post(f"/api/runs/{run}/predict", headers=AUTH)
    assert r.status_code == 422 and "error" in r.json()


def test_security_headers_and_no_auth_refused_off_loopback(tmp_path):
    r = TestClient(create_app(ServeSettings(data_dir=tmp_path / "a", no_auth=True, immediate_jobs=True))).get(
        "/api/runs"
    )
    assert r.status_code == 200
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "unsafe-inline" not in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    from medlens.errors import MedlensError

    with pytest.raises(MedlensError, match="--no-auth is refused"):
        create_app(ServeSettings(data_dir=tmp_path / "b", host="0.0.0.0", no_auth=True))


def test_a_token_is_made_at_first_start_and_stored_hashed(tmp_path, monkeypatch):
    from medlens.serving.service import Service

    monkeypatch.delenv("MEDLENS_API_TOKEN", raising=False)
    service = Service(ServeSettings(data_dir=tmp_path, immediate_jobs=True))
    token = service.first_token
    assert token and len(token) >= 40
    assert token.encode() not in (tmp_path / "medlens.db").read_bytes()
    again = Service(ServeSettings(data_dir=tmp_path, immediate_jobs=True))
    assert again.first_token is None  # printed once
    c = TestClient(create_app(again.settings, again))
    assert c.get("/api/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_100_mb_study_over_the_64_mb_image_cap_is_413_and_leaves_nothing(client):
    before = _leftovers(client)
    big = b"\0" * (100 * 2**20)
    r = client.post(
        f"/api/runs/{client.started['run']}/predict",
        headers=AUTH,
        files={"file": ("huge.dcm", big, "application/dicom")},
    )
    assert r.status_code == 413 and "limit" in r.json()["error"]  # (here the 5 MB request cap answers first)
    assert _leftovers(client) == before


def test_a_browser_session_expires_after_a_working_day(tmp_path):
    from datetime import timedelta

    from medlens.serving.auth import SESSION_HOURS, get_session, new_session
    from medlens.serving.db import SessionRow
    from medlens.serving.service import Service

    service = Service(ServeSettings(data_dir=tmp_path, immediate_jobs=True))
    with service.Session() as db:
        row = new_session(db)
        assert get_session(db, row.id) is not None
        db.get(SessionRow, row.id).created -= timedelta(hours=SESSION_HOURS, minutes=1)
        db.commit()
        assert get_session(db, row.id) is None
        assert db.get(SessionRow, row.id) is None  # ended, not just refused


def test_a_request_declaring_more_than_the_upload_cap_is_refused_before_it_is_read(client):
    r = client.post(
        "/api/datasets",
        headers={**AUTH, "Content-Length": str(50 * 2**20), "Content-Type": "application/zip"},
        content=b"x" * 10,
    )
    assert r.status_code == 413 and "upload limit" in r.json()["error"]


def test_a_study_over_the_image_cap_is_413_naming_it(client, monkeypatch):
    """Under the request cap but over the per-image cap: save_upload stops reading and names the file."""
    monkeypatch.setattr(client.app.state.settings, "max_image_mb", 1.0)
    before = _leftovers(client)
    r = client.post(
        f"/api/runs/{client.started['run']}/predict",
        headers=AUTH,
        files={"file": ("big.dcm", b"\0" * (3 * 2**20), "application/dicom")},
    )
    assert r.status_code == 413 and "big.dcm" in r.json()["error"]
    assert _leftovers(client) == before
