"""One end-to-end test in a real headless Chromium against a real uvicorn server: log in, analyse a real
brain-MRI JPEG on the Study page, see the prediction and its heat-map, find it on the worklist. It saves the
screenshots under docs/screenshots/ci/ (study.png, worklist.png; CI artefacts) and fails on any
Content-Security-Policy violation (the pages have no inline script or style)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "browser-token-0123456789"
CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "ci"  # CI artefacts (ignored)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed in this environment"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, make_folders, one_thread):
    """A real server on 127.0.0.1 (uvicorn in a thread) over a data folder holding one trained run."""
    import uvicorn

    import medlens
    from medlens.serving.app import create_app
    from medlens.serving.service import ServeSettings

    root = tmp_path_factory.mktemp("browser")
    images = make_folders(root / "src", classes=CLASSES, n_per_class=8, size=32)
    medlens.train(
        images, root / "data" / "runs" / "demo", model="cnn-small", epochs=2, image_size=32, progress=False
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDLENS_API_TOKEN", TOKEN)
        app = create_app(ServeSettings(data_dir=root / "data", immediate_jobs=True))
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, name="medlens-uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            srv.should_exit = True
            pytest.fail("the uvicorn server did not answer /api/health within 20 s")
        time.sleep(0.1)
    try:
        yield base, app
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def test_log_in_analyse_a_real_mri_and_find_it_on_the_worklist(server, shared_data):
    server, app = server
    folder = shared_data / "brain-tumor-mri" / "Training"
    glioma = sorted((folder / "glioma").glob("*.jpg"))
    if not glioma:
        pytest.skip(f"no brain-MRI JPEGs under {folder / 'glioma'}")
    # a few studies already waiting (through the API), so the worklist shows a ranking and a read
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server, headers=auth, timeout=60) as api:
        [run] = api.get("/api/runs").json()  # the copied run folder is registered when runs are listed
        assert run["ready"] and run["name"] == "demo"
        for cls, priority in (("notumor", "routine"), ("meningioma", "urgent"), ("pituitary", "routine")):
            jpg = sorted((folder / cls).glob("*.jpg"))[0]
            r = api.post(
                f"/api/runs/{run['id']}/predict",
                files={"file": (jpg.name, jpg.read_bytes(), "image/jpeg")},
                data={"patient_id": f"P-{cls[:3].upper()}-01", "referral_priority": priority},
            )
            assert r.status_code == 200, r.text
        r = api.post(f"/api/worklist/{r.json()['study']}/read", json={"reader": "dr-lee", "finding": "agree"})
        assert r.status_code == 200, r.text

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

            page.goto(f"{server}/login")
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server}/")
            assert page.locator("h1").inner_text() == "Dashboard"

            page.click("nav >> text=Study")
            page.wait_for_url(f"{server}/study")
            page.select_option("#run", label="demo (classification, cnn-small)")
            page.set_input_files("#file", str(glioma[0]))
            page.fill("#patient_id", "P-GLI-07")
            page.select_option("#referral_priority", "stat")
            page.click("button:has-text('Analyse')")
            page.wait_for_selector("#prediction", timeout=60_000)
            prediction = page.inner_text("#prediction").strip()
            assert prediction in CLASSES
            assert page.locator("#ood").is_visible()
            page.wait_for_function(
                "() => { const i = document.getElementById('explanation'); return i && i.complete; }"
            )
            width = page.evaluate("document.getElementById('explanation').naturalWidth")
            assert width > 0, "the heat-map picture did not load"
            page.screenshot(path=str(SCREENSHOTS / "study.png"), full_page=True)

            page.click("text=Open the worklist")
            page.wait_for_selector("table.worklist")
            row = page.locator("table.worklist tr", has_text=glioma[0].name)
            assert row.count() == 1
            assert prediction in row.inner_text()
            assert page.locator("#agreement").is_visible()
            page.wait_for_function(
                "() => [...document.querySelectorAll('.thumb img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            page.screenshot(path=str(SCREENSHOTS / "worklist.png"), full_page=True)

            # a job's page follows its progress without a reload (app.js polls /api/jobs/{id})
            job_id = _job(app, run["id"], state="running", epoch=1)
            page.goto(f"{server}/jobs/{job_id}")
            assert page.inner_text('[data-field="epoch"]') == "1 / 4"
            assert page.locator("button:has-text('Cancel')").is_visible()
            _job(app, run["id"], job_id=job_id, state="running", epoch=3)
            page.wait_for_function(
                "() => document.querySelector('[data-field=\"epoch\"]').textContent === '3 / 4'", timeout=8000
            )
            assert "val_loss 0.400" in page.inner_text('[data-field="val"]')
            _job(app, run["id"], job_id=job_id, state="done", epoch=4)
            page.wait_for_selector("button:has-text('Cancel')", state="hidden", timeout=8000)
            assert page.inner_text('[data-field="state"]') == "done"
            assert page.locator("text=Open the run").is_visible()
        finally:
            browser.close()
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert not problems, problems
    for name in ("study.png", "worklist.png"):
        assert (SCREENSHOTS / name).stat().st_size > 10_000


def _job(app, run_id: int, *, state: str, epoch: int, job_id: int | None = None) -> int:
    """A training job row as a worker would leave it mid-way (this process stands in for the worker)."""
    from medlens.serving.db import Job

    progress = {
        "stage": "train",
        "epoch": epoch,
        "epochs": 4,
        "val_loss": 1.0 - 0.2 * epoch,
        "eta_s": 12 * (4 - epoch),
    }
    with app.state.service.Session() as db:
        job = db.get(Job, job_id) if job_id else Job(kind="train", run_id=run_id, params={})
        job.state, job.pid, job.progress = state, os.getpid(), progress
        db.add(job)
        db.commit()
        return job.id
