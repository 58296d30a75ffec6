"""Every command that writes goes through one set of output rules: never over or into a source, never into
another run, a dataset or a folder medlens did not make for that output; a file output replaces only a file
of its own kind; a folder-vs-file mismatch is one line. Evaluating a run into its own folder keeps working."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_cli

import medlens
from medlens.utils.files import read_marker

FAST = ["--model", "logreg", "--epochs", "1", "--image-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_folders, one_thread):
    """A dataset, two trained runs of it and an ingested manifest CSV, shared by the module's tests."""
    root = tmp_path_factory.mktemp("outputs")
    data = make_folders(root / "data", n_per_class=6, size=16)
    run_a = medlens.train(data, root / "run_a", model="logreg", epochs=1, image_size=16, progress=False)
    run_b = medlens.train(data, root / "run_b", model="logreg", epochs=1, image_size=16, progress=False)
    medlens.ingest(data).save(root / "m.csv")
    return {"root": root, "data": data, "run_a": run_a, "run_b": run_b, "csv": root / "m.csv"}


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes (what must stay unchanged)."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_line(monkeypatch, capsys, *args) -> str:
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2, (code, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err and "internal error" not in err
    return lines[0]


def test_plan_never_overwrites_its_source_csv(monkeypatch, capsys, world):
    csv = world["csv"]
    before = csv.read_bytes()
    line = _one_line(monkeypatch, capsys, "plan", csv, "-o", csv, "--no-probe")
    assert "writing there would destroy the input" in line
    assert csv.read_bytes() == before


def test_plan_never_replaces_a_runs_manifest(monkeypatch, capsys, world):
    run = world["run_a"]
    before = _digest(run)
    line = _one_line(monkeypatch, capsys, "plan", world["data"], "-o", run / "manifest.csv", "--no-probe")
    assert "lies inside" in line and "a run folder medlens wrote" in line
    assert _digest(run) == before


@pytest.mark.parametrize(
    "where, message",
    [
        ("folder", "is a folder; give a file path for the plan JSON"),
        ("under-file", "is a file, not a folder"),
    ],
)
def test_plan_to_a_folder_or_under_a_file_is_one_line(monkeypatch, capsys, world, tmp_path, where, message):
    (tmp_path / "notes.txt").write_text("mine")
    out = tmp_path if where == "folder" else tmp_path / "notes.txt" / "plan.json"
    assert message in _one_line(monkeypatch, capsys, "plan", world["data"], "-o", out, "--no-probe")


def test_plan_replaces_its_own_plan_but_no_other_json(monkeypatch, capsys, world, tmp_path):
    out = tmp_path / "plan.json"
    for _ in range(2):
        code, _out, err = run_cli(monkeypatch, capsys, "plan", world["data"], "-o", out, "--no-probe")
        assert code == 0, err
    assert "choices" in json.loads(out.read_text())
    theirs = tmp_path / "settings.json"
    theirs.write_text('{"mine": true}')
    line = _one_line(monkeypatch, capsys, "plan", world["data"], "-o", theirs, "--no-probe")
    assert "is not a plan JSON medlens wrote" in line
    assert theirs.read_text() == '{"mine": true}'


def test_evaluate_never_writes_into_another_run(monkeypatch, capsys, world):
    before = _digest(world["run_b"])
    line = _one_line(monkeypatch, capsys, "evaluate", world["run_a"], "-o", world["run_b"], "--quiet")
    assert "is a run folder medlens wrote for something else" in line
    assert _digest(world["run_b"]) == before


@pytest.mark.parametrize("sub", ["", "figures"])
def test_evaluate_never_writes_into_the_dataset(monkeypatch, capsys, world, sub):
    data = world["data"]
    before = _digest(data)
    out = data / sub if sub else data
    line = _one_line(monkeypatch, capsys, "evaluate", world["run_a"], "-o", out, "--quiet")
    assert "is the source" in line or "lies inside the source folder" in line
    assert _digest(data) == before and not (data / "figures").exists()


def test_evaluate_into_its_own_run_and_again_into_its_own_folder(monkeypatch, capsys, world, tmp_path):
    run = world["root"] / "run_own"
    shutil.copytree(world["run_a"], run)
    code, _out, err = run_cli(monkeypatch, capsys, "evaluate", run, "--bootstrap", "10", "--quiet")
    assert code == 0, err
    assert read_marker(run)["kind"] == "run"  # the run keeps its own marker
    for _ in range(2):
        code, _out, err = run_cli(
            monkeypatch, capsys, "evaluate", run, "--data", world["data"], "-o", tmp_path / "ev",
            "--bootstrap", "10", "--quiet",
        )  # fmt: skip
        assert code == 0, err
    assert read_marker(tmp_path / "ev")["kind"] == "evaluation"


def _foreign(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.docx").write_text("keep me")
    return folder


@pytest.mark.parametrize(
    "command",
    ["ingest-run", "ingest-csv", "compare-run", "compare-html", "audit-run", "explain-audit", "predict-run",
     "triage-data", "predict-foreign", "explain-foreign", "audit-foreign", "curve-foreign"],
)  # fmt: skip
def test_every_output_goes_through_the_rules(monkeypatch, capsys, world, tmp_path, command):
    data, run_a, run_b = world["data"], world["run_a"], world["run_b"]
    image = next(data.rglob("*.png"))
    theirs_csv = tmp_path / "labels.csv"
    theirs_csv.write_text("path,diagnosis\na.png,x\n")
    theirs_html = tmp_path / "page.html"
    theirs_html.write_text("<html><title>my page</title></html>")
    audit = tmp_path / "audit"
    assert run_cli(monkeypatch, capsys, "audit", data, "-o", audit, "--quiet")[0] == 0
    foreign = _foreign(tmp_path)
    args, message = {
        "ingest-run": (["ingest", data, "-o", run_b / "manifest.csv"], "a run folder medlens wrote"),
        "ingest-csv": (["ingest", data, "-o", theirs_csv], "is not a manifest CSV medlens wrote"),
        "compare-run": (["compare", run_a, run_b, "-o", run_b / "report.html"], "a run folder medlens wrote"),
        "compare-html": (["compare", run_a, run_b, "-o", theirs_html], "is not a medlens HTML report"),
        "audit-run": (["audit", data, "-o", run_b, "--quiet"], "is a run folder medlens wrote"),
        "explain-audit": (["explain", run_a, image, "-o", audit], "is an audit folder medlens wrote"),
        "predict-run": (["predict", run_a, image, "-o", run_b], "is a run folder medlens wrote"),
        "triage-data": (["triage", run_a, image, "-o", data], "contains the source"),
        "predict-foreign": (["predict", run_a, image, "-o", foreign], "is not a predictions folder medlens"),
        "explain-foreign": (["explain", run_a, image, "-o", foreign], "is not an explanations folder"),
        "audit-foreign": (["audit", data, "-o", foreign, "--quiet"], "is not an audit folder medlens wrote"),
        "curve-foreign": (["curve", data, "-o", foreign, "--quiet"], "is not a curve folder medlens wrote"),
    }[command]
    kept = {p: _digest(p) for p in (run_b, data, foreign, audit)}
    texts = {p: p.read_text() for p in (theirs_csv, theirs_html)}
    assert message in _one_line(monkeypatch, capsys, *args)
    assert {p: _digest(p) for p in kept} == kept
    assert {p: p.read_text() for p in texts} == texts


def test_outputs_medlens_adds_to_are_marked_and_accepted_again(monkeypatch, capsys, world, tmp_path):
    image = next(world["data"].rglob("*.png"))
    for command, kind in (("explain", "explanations"), ("triage", "worklist")):
        out = tmp_path / kind
        extra = ["--no-explain"] if command == "triage" else []
        for _ in range(2):
            code, _out, err = run_cli(monkeypatch, capsys, command, world["run_a"], image, "-o", out, *extra)
            assert code == 0, err
        assert read_marker(out)["kind"] == kind
