"""The server-rendered pages through TestClient: log in (wrong token, the brake on guessing), sessions and
CSRF on every form, a study uploaded through the form, the worklist, a read and the agreement block."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from fastapi.testclient import TestClient

import medlens
from medlens.serving.app import create_app
from medlens.serving.auth import COOKIE, LoginLimiter
from medlens.serving.service import ServeSettings

TOKEN = "pages-token-0123456789"
HTML = {"Accept": "text/html,application/xhtml+xml"}
PAGES = ("/", "/datasets", "/runs", "/runs/1", "/study", "/worklist", "/worklist?run=1", "/jobs/1")


@pytest.fixture(scope="module")
def app_data(tmp_path_factory, make_folders, one_thread):
    """A data folder holding one trained run (copied runs appear by themselves), and the app on it."""
    root = tmp_path_factory.mktemp("pages")
    images = make_folders(root / "src", classes=("cyst", "normal"), n_per_class=12, size=32)
    medlens.train(
        images, root / "data" / "runs" / "demo", model="cnn-small", epochs=2, image_size=32, progress=False
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDLENS_API_TOKEN", TOKEN)
        app = create_app(ServeSettings(data_dir=root / "data", immediate_jobs=True, max_upload_mb=5))
    app.images = images
    return app


@pytest.fixture(scope="module")
def client(app_data):
    """A browser that logged in."""
    with TestClient(app_data, headers=HTML) as c:
        r = c.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
        yield c


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def test_login_refuses_a_wrong_token_and_brakes_after_five(app_data):
    app_data.state.limiter = LoginLimiter()
    try:
        with TestClient(app_data, headers=HTML) as c:
            page = c.get("/login")
            assert page.status_code == 200 and 'name="token"' in page.text
            for _ in range(5):
                r = c.post("/login", data={"token": "guess"}, follow_redirects=False)
                assert r.status_code == 401 and "wrong token" in r.text and "<html" in r.text
                assert COOKIE not in r.cookies
            r = c.post("/login", data={"token": TOKEN}, follow_redirects=False)  # even the right one, now
            assert r.status_code == 429 and "too many failed logins; wait a minute" in r.text
    finally:
        app_data.state.limiter = LoginLimiter()


def test_login_sets_a_strict_httponly_cookie_and_logout_ends_it(app_data):
    with TestClient(app_data, headers=HTML) as c:
        r = c.post("/login", data={"token": TOKEN}, follow_redirects=False)
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert "secure" not in cookie  # plain http on the laptop
        page = c.get("/")
        assert page.status_code == 200 and "Log out" in page.text
        r = c.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"
        r = c.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"


def test_pages_without_a_session_redirect_to_login(app_data):
    with TestClient(app_data, headers=HTML) as c:
        for path in PAGES:
            r = c.get(path, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == "/login", path
        r = c.post("/study", data={"run": "1"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login"


def test_every_page_renders_with_the_nav_and_no_inline_script(client):
    csrf = csrf_of(client.get("/runs/1").text)
    r = client.post("/runs/1/jobs", data={"csrf": csrf, "kind": "calibrate"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/jobs/")
    job = client.get(r.headers["location"]).text
    # the toy model separates its validation cases perfectly: calibration is refused, the page says why
    assert "calibrate" in job and "state-failed" in job and "temperature scaling degenerated" in job
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:300])
        html = r.text
        for label in ("Dashboard", "Datasets", "Runs", "Study", "Worklist", "Log out"):
            assert f">{label}<" in html, (path, label)
        assert "<script>" not in html and "style=" not in html and "<style" not in html, path
        assert "unsafe-inline" not in r.headers["content-security-policy"]
        for form in re.findall(r"<form[^>]*method=\"post\".*?</form>", html, flags=re.S):
            assert 'name="csrf"' in form, (path, form[:120])
    dashboard = client.get("/").text
    assert "demo" in dashboard and "cnn-small" in dashboard and "Accuracy" in dashboard
    run = client.get("/runs/1").text
    assert "/api/runs/1/files/report.html" in run and "Calibrate" in run
    assert client.get("/runs/99").status_code == 404


def test_a_form_post_without_the_csrf_field_is_refused(client):
    for path, data in (("/study", {"run": "1"}), ("/runs", {"dataset": "1"}), ("/worklist/1/read", {})):
        r = client.post(path, data=data, follow_redirects=False)
        assert r.status_code == 403, path
        assert "CSRF" in r.text and "<html" in r.text
    r = client.post("/datasets", data={"path": "/tmp", "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403


def test_study_upload_shows_the_prediction_then_the_worklist_records_a_read(client, app_data):
    csrf = csrf_of(client.get("/study").text)
    cyst = sorted((app_data.images / "cyst").glob("*.png"))[0]
    r = client.post(
        "/study",
        data={"csrf": csrf, "run": "1", "patient_id": "<b>P-1</b>", "referral_priority": "stat"},
        files={"file": (cyst.name, cyst.read_bytes(), "image/png")},
    )
    assert r.status_code == 200, r.text[:500]
    html = r.text
    prediction = re.search(r'id="prediction">([^<]+)<', html).group(1)
    assert prediction in ("cyst", "normal")
    png = re.search(r'<img id="explanation" src="([^"]+)"', html).group(1)
    assert png.startswith("/api/explanations/1/")
    assert client.get(png).content[:4] == b"\x89PNG"  # the session cookie opens it
    assert "&lt;b&gt;P-1&lt;/b&gt;" in html and "<b>P-1</b>" not in html  # escaped
    assert "distribution" in html and "probabilities</h2>" in html.lower() and 'href="/worklist?run=1' in html
    study = int(re.search(r"Study (\d+):", html).group(1))

    page = client.get("/worklist?run=1&reader=dr-a")
    assert f'id="study-{study}"' in page.text and cyst.name in page.text
    assert 'value="dr-a"' in page.text  # the reader's name carried in the query, no cookie
    assert '<option value="cyst">' in page.text and '<option value="normal">' in page.text
    r = client.post(
        f"/worklist/{study}/read",
        data={"csrf": csrf_of(page.text), "run": "1", "reader": "dr-a", "finding": "agree"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/worklist?run=1&reader=dr-a")
    after = client.get(r.headers["location"]).text
    block = after[after.index('id="agreement"') :]
    assert re.search(r'stat-value">1</span><span class="stat-label">reads', block)
    assert "100.0 %" in block and "<td>dr-a</td>" in block
    assert "dr-a: agree" in after

    r = client.post(
        f"/worklist/{study}/read",
        data={"csrf": csrf_of(after), "run": "1", "reader": "dr-b", "finding": "maybe"},
    )
    assert r.status_code == 400 and "finding must be one of" in r.text and "<html" in r.text


def test_a_bad_study_renders_the_error_on_the_page(client):
    csrf = csrf_of(client.get("/study").text)
    r = client.post(
        "/study", data={"csrf": csrf, "run": "1"}, files={"file": ("notes.txt", b"hello", "text/plain")}
    )
    assert r.status_code in (415, 422) and "notes.txt" in r.text and 'class="alert alert-error"' in r.text
    assert r.headers["content-type"].startswith("text/html")
    r = client.post(
        "/study",
        data={"csrf": csrf, "run": "1", "study_time": "yesterday"},
        files={"file": ("a.png", b"x", "image/png")},
    )
    assert r.status_code == 400 and "study_time" in r.text


def test_dataset_upload_audit_training_and_the_job_page(client, app_data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(app_data.images.rglob("*.png")):
            zf.write(f, f"toy/{f.relative_to(app_data.images)}")
    csrf = csrf_of(client.get("/datasets").text)
    r = client.post(
        "/datasets",
        data={"csrf": csrf},
        files={"file": ("toy.zip", buf.getvalue(), "application/zip")},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/datasets"
    page = client.get("/datasets").text
    assert "toy.zip" in page and "/api/datasets/1/audit" in page and "state-done" in page
    r = client.post(
        "/datasets", data={"csrf": csrf}, files={"file": ("x.tar", b"\0" * 10, "application/x-tar")}
    )
    assert r.status_code == 415 and ".zip" in r.text and "<html" in r.text

    runs = client.get("/runs").text
    assert 'name="dataset"' in runs and "toy.zip" in runs
    r = client.post(
        "/runs",
        data={
            "csrf": csrf,
            "dataset": "1",
            "task": "classification",
            "model": "cnn-small",
            "epochs": "1",
            "image_size": "32",
            "name": "from-form",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/jobs/")
    job = client.get(r.headers["location"]).text
    assert "state-done" in job and 'data-job="' in job and "Open the run" in job
    r = client.post(f"{r.headers['location']}/cancel", data={"csrf": csrf})
    assert r.status_code == 400 and "already done" in r.text
    compare = client.get("/runs").text
    assert "from-form" in compare and "demo" in compare
    r = client.post("/runs", data={"csrf": csrf, "dataset": "1", "epochs": "many"})
    assert r.status_code == 400 and "epochs must be a whole number" in r.text


def test_no_auth_serves_the_pages_without_a_login(tmp_path):
    app = create_app(ServeSettings(data_dir=tmp_path / "local", no_auth=True, immediate_jobs=True))
    with TestClient(app, headers=HTML) as c:
        page = c.get("/")
        assert page.status_code == 200 and "Log out" not in page.text and "No runs yet" in page.text
        assert c.get("/login", follow_redirects=False).headers["location"] == "/"
        r = c.post("/runs", data={"csrf": "", "dataset": "7"})
        assert r.status_code == 404 and "dataset 7 does not exist" in r.text
