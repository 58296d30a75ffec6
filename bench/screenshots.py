"""The README's screenshots of the web app, made with the real brain-MRI run (not a test; run by hand).

    .venv/bin/python bench/screenshots.py

Serves ``bench/out/cal-brain`` (from bench/bench_calibration.py) on 127.0.0.1, sends six brain test images
to the worklist through the API (one read recorded), then drives Debian's Chromium with Playwright: a study
analysed on the Study page, and the worklist. Writes docs/screenshots/study.png and worklist.png.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "bench" / "out" / "cal-brain"
OUT = ROOT / "docs" / "screenshots"
TOKEN = "screenshot-token-0123456789"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def main() -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from medlens.serving.app import create_app
    from medlens.serving.service import ServeSettings

    data = Path(tempfile.mkdtemp(prefix="medlens-shots-"))
    shutil.copytree(RUN, data / "runs" / "brain-cnn-small", ignore=shutil.ignore_patterns("checkpoints"))
    os.environ["MEDLENS_API_TOKEN"] = TOKEN
    app = create_app(ServeSettings(data_dir=data, immediate_jobs=True))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(f"{base}/api/health").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    [run] = api.get("/api/runs").json()
    test = pd.read_csv(RUN / "manifest.csv").query("split == 'test'")
    picks = [("notumor", "routine"), ("meningioma", "urgent"), ("pituitary", "routine"), ("notumor", "stat")]
    picks += [("glioma", "routine")]
    last = None
    for i, (label, priority) in enumerate(picks):
        path = (RUN / test[test["label"] == label]["image"].iloc[i]).resolve()
        last = api.post(
            f"/api/runs/{run['id']}/predict",
            files={"file": (path.name, path.read_bytes(), "image/jpeg")},
            data={"patient_id": f"P-{1040 + i}", "referral_priority": priority},
        ).json()
    api.post(f"/api/worklist/{last['study']}/read", json={"reader": "dr-lee", "finding": "agree"})
    glioma = (RUN / test[test["label"] == "glioma"]["image"].iloc[7]).resolve()
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(f"{base}/login")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        page.goto(f"{base}/study")
        page.select_option("#run", index=0)
        page.set_input_files("#file", str(glioma))
        page.fill("#patient_id", "P-1051")
        page.select_option("#referral_priority", "urgent")
        page.click("button:has-text('Analyse')")
        page.wait_for_selector("#prediction", timeout=60_000)
        page.wait_for_function("() => document.getElementById('explanation').complete")
        page.screenshot(path=str(OUT / "study.png"), full_page=True)
        page.click("text=Open the worklist")
        page.wait_for_selector("table.worklist")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.thumb img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        page.screenshot(path=str(OUT / "worklist.png"), full_page=True)
        browser.close()
    server.should_exit = True
    shutil.rmtree(data, ignore_errors=True)
    print(f"wrote {OUT / 'study.png'} and {OUT / 'worklist.png'}")


if __name__ == "__main__":
    main()
