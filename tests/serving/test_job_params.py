"""Job parameters and stored fields are checked before anything runs: every field of
``POST /api/runs/{id}/jobs`` against its kind's schema and the allowed folders, job errors that never quote a
file, studies whose referral priority is checked at upload, and a worklist that one bad stored row cannot
break."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import medlens
from medlens.serving.app import create_app
from medlens.serving.db import Job, Prediction, Study
from medlens.serving.run import copy_run
from medlens.serving.service import ServeSettings

TOKEN = "params-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "secret_column_a,secret_column_b"


@pytest.fixture(scope="module")
def client(tmp_path_factory, make_folders, one_thread):
    """A service with one tiny run, one dataset under the allowed folder, and a secret CSV outside it."""
    root = tmp_path_factory.mktemp("params")
    allowed = root / "allowed"
    data = make_folders(allowed / "toy", n_per_class=6, size=16)
    run = medlens.train(data, root / "cli-run", model="logreg", epochs=1, image_size=16, progress=False)
    outside = make_folders(root / "outside" / "toy", n_per_class=6, size=16)
    secret = root / "outside" / "secret.csv"
    secret.write_text(f"{SECRET}\n1,2\n")
    (allowed / "meta.csv").write_text("patient_id,age\nP1,40\n")
    settings = ServeSettings(data_dir=root / "data", immediate_jobs=True, allow_paths=[allowed])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDLENS_API_TOKEN", TOKEN)
        app = create_app(settings)
        copy_run(run, root / "data" / "runs")
        with TestClient(app) as c:
            c.run_id = c.get("/api/runs", headers=AUTH).json()[0]["id"]
            r = c.post("/api/datasets", headers=AUTH, json={"path": str(data)})
            assert r.status_code == 201, r.text
            c.dataset = r.json()["id"]
            c.root, c.allowed, c.outside, c.secret, c.images = root, allowed, outside, secret, data
            yield c


def _jobs(client) -> int:
    with client.app.state.service.Session() as db:
        return db.query(Job).count()


def _post(client, body: dict):
    return client.post(f"/api/runs/{client.run_id}/jobs", headers=AUTH, json=body)


def test_evaluate_on_a_folder_outside_the_allowed_paths_is_refused_and_nothing_is_queued(client):
    before = _jobs(client)
    r = _post(client, {"kind": "evaluate", "data": str(client.outside)})
    assert r.status_code == 403, r.text
    assert list(r.json()) == ["error"] and "data" in r.json()["error"] and "--allow-path" in r.json()["error"]
    assert _jobs(client) == before
    assert not list((client.root / "data" / "runs").rglob("eval-*"))


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "evaluate", "metadata": "SECRET", "cohorts": "age"},
        {"kind": "evaluate", "readers": "SECRET"},
        {"kind": "triage", "dataset": 0, "history": "SECRET"},
    ],
    ids=["metadata", "readers", "history"],
)
def test_side_files_outside_the_allowed_paths_are_refused_and_never_quoted(client, body):
    body = {k: (str(client.secret) if v == "SECRET" else v) for k, v in body.items()}
    if body.get("dataset") == 0:
        body["dataset"] = client.dataset
    before = _jobs(client)
    r = _post(client, body)
    assert r.status_code == 403, r.text
    field = next(k for k, v in body.items() if v == str(client.secret))
    assert field in r.json()["error"] and "secret_column" not in r.text
    assert _jobs(client) == before


def test_an_allowed_side_file_runs_and_a_failed_job_never_quotes_a_file(client):
    r = _post(client, {"kind": "evaluate", "metadata": str(client.allowed / "meta.csv"), "cohorts": "nosuch"})
    assert r.status_code == 202, r.text
    job = client.get(f"/api/jobs/{r.json()['job']}", headers=AUTH).json()
    assert job["state"] == "failed" and "\n" not in job["error"], job
    assert "internal error" not in job["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "evaluate", "rm_rf": True}, "rm_rf"),
        ({"kind": "calibrate", "data": "x"}, "data"),
        ({"kind": "evaluate", "threshold": 7}, "threshold"),
        ({"kind": "evaluate", "n_bootstrap": "many"}, "n_bootstrap"),
        ({"kind": "evaluate", "patient_agg": "median"}, "patient_agg"),
        ({"kind": "triage"}, "dataset"),
        ({"kind": "triage", "dataset": 1, "read_every": -1}, "read_every"),
        ({"kind": "triage", "dataset": 1, "now": "yesterday"}, "now"),
        ({"kind": "evaluate", "dataset": 1, "data": "/x"}, "data"),
    ],
    ids=["unknown", "calibrate-data", "threshold", "type", "choice", "no-dataset", "range", "time", "both"],
)
def test_job_fields_are_checked_against_the_kind_schema_before_queueing(client, body, field):
    before = _jobs(client)
    r = _post(client, body)
    assert r.status_code in (400, 422), r.text
    assert list(r.json()) == ["error"] and field in r.json()["error"] and "\n" not in r.json()["error"]
    assert _jobs(client) == before


def test_a_triage_job_on_a_missing_dataset_is_404(client):
    r = _post(client, {"kind": "triage", "dataset": 999})
    assert r.status_code == 404 and "dataset 999" in r.json()["error"]


def test_evaluate_and_triage_by_dataset_id_run(client):
    r = _post(client, {"kind": "evaluate", "dataset": client.dataset, "n_bootstrap": 10})
    assert r.status_code == 202, r.text
    job = client.get(f"/api/jobs/{r.json()['job']}", headers=AUTH).json()
    assert job["state"] == "done", job
    r = _post(client, {"kind": "triage", "dataset": client.dataset, "explain": False, "urgent": ["cyst"]})
    assert r.status_code == 202, r.text
    job = client.get(f"/api/jobs/{r.json()['job']}", headers=AUTH).json()
    assert job["state"] == "done", job


def test_an_internal_job_error_names_only_its_type_and_log(client, monkeypatch):
    from medlens.serving import jobs

    def boom(*_a, **_k):
        raise TypeError(f"unexpected {SECRET}")

    monkeypatch.setattr(jobs, "_dispatch", boom)
    r = _post(client, {"kind": "calibrate"})
    job = client.get(f"/api/jobs/{r.json()['job']}", headers=AUTH).json()
    assert job["state"] == "failed" and "TypeError" in job["error"] and "secret_column" not in job["error"]
    assert str(client.root) not in job["error"]  # no server path either


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_an_unknown_referral_priority_is_refused_at_upload_listing_the_allowed_ones(client):
    r = client.post(
        f"/api/runs/{client.run_id}/predict",
        headers=AUTH,
        files={"file": ("a.png", _png(), "image/png")},
        data={"referral_priority": "asap!!"},
        params={"explain": "false"},
    )
    assert r.status_code == 400, r.text
    assert "referral_priority" in r.json()["error"] and "stat, urgent, routine" in r.json()["error"]
    r = client.post(
        f"/api/runs/{client.run_id}/predict",
        headers=AUTH,
        files={"file": ("a.png", _png(), "image/png")},
        data={"referral_priority": "STAT"},
        params={"explain": "false"},
    )
    assert r.status_code == 200, r.text


def test_one_bad_stored_row_never_breaks_the_worklist(client):
    run = client.run_id
    r = client.post(
        f"/api/runs/{run}/predict",
        headers=AUTH,
        files={"file": ("good.png", _png(), "image/png")},
        params={"explain": "false"},
    )
    assert r.status_code == 200, r.text
    good = r.json()["study"]
    service = client.app.state.service
    with service.Session() as db:  # rows stored before the upload check existed
        record = db.get(Prediction, db.query(Prediction).filter_by(study_id=good).one().id).record
        garbled = {**record, "probabilities": {k: "x" for k in record["probabilities"]}}
        for priority, when, stored in (
            ("asap!!", None, record),
            (None, "last tuesday", record),
            (None, None, garbled),
        ):
            study = Study(run_id=run, path="x.png", original_name="old.png", referral_priority=priority)
            study.study_time = when
            db.add(study)
            db.flush()
            label = stored.get("prediction")
            db.add(Prediction(study_id=study.id, run_id=run, prediction=label, record=stored))
        db.commit()
    for _ in range(2):
        r = client.get(f"/api/worklist?run={run}", headers=AUTH)
        assert r.status_code == 200, r.text
    rows = r.json()
    reasons = {row["study"]: row["reason"] for row in rows}
    assert good in reasons
    bad = [row for row in rows if row["input"] == "old.png"]
    assert len(bad) == 3
    garbled = [row for row in bad if "stored prediction unusable" in row["reason"]]
    assert len(garbled) == 1 and "unreadable" in garbled[0]["reason"], bad
    assert any("asap!!" in row["reason"] and "referral" in row["reason"] for row in bad), bad
    assert any("last tuesday" in row["reason"] and "study_time" in row["reason"] for row in bad), bad


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"model": "nosuchnet"}, "nosuchnet"),
        ({"task": "segmentation", "model": "logreg"}, "model"),
        ({"label_smoothing": 5}, "label_smoothing"),
        ({"batch_size": 10**12}, "batch_size"),
        ({"patience": -1}, "patience"),
        ({"max_minutes": -5}, "max_minutes"),
        ({"spacing": [0.0001, 0.0001, 0.0001]}, "spacing"),
        ({"patch_size": "4096,4096,4096"}, "patch_size"),
    ],
)
def test_training_options_are_checked_before_a_run_is_made(client, options, field):
    before = client.get("/api/runs", headers=AUTH).json()
    r = client.post("/api/runs", headers=AUTH, json={"dataset": client.dataset, "name": "never", **options})
    assert r.status_code == 400, r.text
    assert field in r.json()["error"] and "\n" not in r.json()["error"]
    assert client.get("/api/runs", headers=AUTH).json() == before


def test_two_runs_started_in_one_second_get_two_default_names(client, monkeypatch):
    from medlens.serving import service_runs

    monkeypatch.setattr(service_runs, "enqueue", lambda *_: None)  # queued, never run here
    first = client.post("/api/runs", headers=AUTH, json={"dataset": client.dataset, "model": "logreg"})
    second = client.post("/api/runs", headers=AUTH, json={"dataset": client.dataset, "model": "logreg"})
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    names = {r["id"]: r["name"] for r in client.get("/api/runs", headers=AUTH).json()}
    assert names[first.json()["run"]] != names[second.json()["run"]]


def test_a_dataset_path_outside_the_allowed_folders_is_403(client):
    r = client.post("/api/datasets", headers=AUTH, json={"path": str(client.outside)})
    assert r.status_code == 403 and "allowed root" in r.json()["error"]


def test_an_empty_dataset_zip_is_refused_and_leaves_nothing(client):
    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    before = sorted((client.root / "data" / "datasets").iterdir())
    r = client.post(
        "/api/datasets", headers=AUTH, files={"file": ("empty.zip", buf.getvalue(), "application/zip")}
    )
    assert r.status_code == 422 and "holds no files" in r.json()["error"]
    assert sorted((client.root / "data" / "datasets").iterdir()) == before


def test_one_broken_image_in_a_dataset_zip_is_reported_and_the_others_audited(client):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(client.images.rglob("*.png")):
            zf.write(f, f"toy/{f.relative_to(client.images)}")
        zf.writestr("toy/normal/broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    r = client.post(
        "/api/datasets", headers=AUTH, files={"file": ("toy.zip", buf.getvalue(), "application/zip")}
    )
    assert r.status_code == 201, r.text
    audit = client.get(f"/api/jobs/{r.json()['audit_job']}", headers=AUTH).json()
    assert audit["state"] == "done", audit
    report = json.loads((client.root / "data" / "audits" / str(r.json()["id"]) / "audit.json").read_text())
    assert "broken.png" in json.dumps(report) and report["n_images"] >= 12, report.get("n_images")


def test_one_broken_study_among_several_is_its_own_row_and_the_others_complete(client):
    run = client.run_id
    answers = []
    for name, payload in (
        ("a.png", _png()),
        ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40),
        ("c.png", _png()),
    ):
        r = client.post(
            f"/api/runs/{run}/predict",
            headers=AUTH,
            files={"file": (name, payload, "image/png")},
            params={"explain": "false"},
        )
        answers.append(r)
    assert [r.status_code for r in answers] == [200, 422, 200], [r.text for r in answers]
    assert "broken.png" in answers[1].json()["error"]
    rows = client.get(f"/api/worklist?run={run}", headers=AUTH).json()
    broken = [row for row in rows if row["input"] == "broken.png"]
    assert len(broken) == 1 and "unreadable" in broken[0]["reason"]
    scored = [row["rank"] for row in rows if not isinstance(row["priority"], str)]
    assert broken[0]["priority"] == "read first, unreadable" and broken[0]["rank"] < min(scored)
    done = {row["study"] for row in rows if row["prediction"] is not None}
    assert {answers[0].json()["study"], answers[2].json()["study"]} <= done


@pytest.mark.parametrize("path", ["a\x00b", "~nosuchuser-medlens/x", "/" + "a" * 300])
def test_a_path_the_system_cannot_take_is_4xx_never_500(client, path):
    r = client.post("/api/datasets", headers=AUTH, json={"path": path})
    assert 400 <= r.status_code < 500 and list(r.json()) == ["error"], r.text
    r = _post(client, {"kind": "evaluate", "metadata": path})
    assert 400 <= r.status_code < 500 and "metadata" in r.json()["error"], r.text


def test_a_stored_row_the_task_cannot_score_is_flagged_for_review_with_its_reason():
    import math

    from medlens.errors import MedlensError
    from medlens.serving.stored import guarded_finding
    from medlens.triaging.config import TriageConfig
    from medlens.triaging.worklist import build_worklist

    class Task:
        def triage_score(self, record, urgent):
            if record["study"] == "2":
                raise MedlensError("urgent class(es) ['x'] are not classes of this model")
            return 0.5, "p(x) 0.50"

    notes: dict[str, list[str]] = {}
    finding = guarded_finding(Task(), notes)
    records = [{"study": "1", "input": "a"}, {"study": "2", "input": "b"}]
    rows = build_worklist(records, TriageConfig(), finding)
    assert len(rows) == 2 and math.isnan(finding(records[1], TriageConfig())[0])
    assert "not classes of this model" in notes["2"][0]
    assert next(r for r in rows if r["study"] == "2")["contrib_review"] > 0  # a person must look
