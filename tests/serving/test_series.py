"""A DICOM series uploaded as a zip of its files is one study for a 3D run."""

from __future__ import annotations

import io
import zipfile

from dicom_helpers import write_series
from fastapi.testclient import TestClient
from seg_phantoms import make_spheres

import medlens
from medlens.serving.app import create_app
from medlens.serving.service import ServeSettings


def test_a_zipped_dicom_series_is_segmented_by_a_3d_run(tmp_path, monkeypatch, one_thread):
    data = make_spheres(tmp_path / "vol", n_cases=4)
    medlens.train(
        data,
        tmp_path / "d" / "runs" / "seg3d",
        task="segmentation",
        model="unet",
        epochs=1,
        batch_size=4,
        model_args={"channels": [8, 16, 32], "num_res_units": 1},
        patch_size=[16, 16, 16],
        samples_per_volume=2,
        progress=False,
    )
    write_series(tmp_path / "series", positions=[float(z) for z in range(12)])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted((tmp_path / "series").iterdir()):
            zf.write(f, f"study/{f.name}")
    monkeypatch.setenv("MEDLENS_API_TOKEN", "series-token")
    client = TestClient(create_app(ServeSettings(data_dir=tmp_path / "d", immediate_jobs=True)))
    auth = {"Authorization": "Bearer series-token"}
    [run] = client.get("/api/runs", headers=auth).json()
    r = client.post(
        f"/api/runs/{run['id']}/predict", headers=auth, files={"file": ("mr.zip", buf.getvalue())}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["prediction"] is None and "lesion" in body["rationale"]
    assert client.get(body["explanation_png"], headers=auth).status_code == 200
    [row] = client.get(f"/api/worklist?run={run['id']}", headers=auth).json()
    assert row["study"] == body["study"] and row["reason"].startswith(("lesion", "no lesion"))
