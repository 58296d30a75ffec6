"""The worklist: never drops a study, unreadable first, ties to the longer wait, state kept, files safe."""

from __future__ import annotations

import csv
import json
import os
import random
from datetime import datetime, timedelta, timezone

import pytest

from medlens.errors import MedlensError
from medlens.triaging.config import TriageConfig
from medlens.triaging.worklist import build_worklist, load_state, mark_read, write_worklist

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)


def finding(record, cfg):
    p = float((record.get("probabilities") or {}).get("glioma", 0.0))
    return p, f"p(glioma) {p:.2f}"


def rec(study, p=0.5, minutes_ago=None, error=None, **extra):
    time = None if minutes_ago is None else (NOW - timedelta(minutes=minutes_ago)).isoformat()
    return {
        "input": f"in/{study}.png",
        "study": study,
        "patient_id": f"P{study}",
        "study_time": time,
        "referral_priority": None,
        "task": "classification",
        "prediction": None if error else "glioma",
        "probabilities": None if error else {"glioma": p, "notumor": 1 - p},
        "confidence": None if error else 0.99,
        "calibrated": True,
        "ood": None,
        "explain_png": None if error else f"explain/{study}.png",
        "error": error,
        "dicom": None,
        **extra,
    }


def test_no_study_is_ever_dropped_and_unreadable_ones_come_first():
    rng = random.Random(0)
    records = []
    for i in range(300):
        if rng.random() < 0.1:
            records.append(rec(f"s{i}", error=f"truncated file {i}", minutes_ago=rng.choice([None, 5, 60])))
        else:  # few distinct probabilities and waits: many equal priorities
            records.append(
                rec(f"s{i % 250}", p=rng.choice([0.0, 0.5, 1.0]), minutes_ago=rng.choice([None, 0, 60]))
            )
    rows = build_worklist(records, TriageConfig(), finding, now=NOW)
    assert sorted(r["input_index"] for r in rows) == list(range(len(records)))  # each exactly once
    assert sorted(r["input"] for r in rows) == sorted(r["input"] for r in records)
    assert [r["rank"] for r in rows] == list(range(1, len(records) + 1))
    n_bad = sum(r["error"] is not None for r in records)
    assert n_bad > 10
    top = rows[:n_bad]
    assert all(r["unreadable"] and r["priority"] == "read first, unreadable" for r in top)
    assert all(r["reason"].startswith("read first, unreadable: truncated file") for r in top)
    assert not any(r["unreadable"] for r in rows[n_bad:])
    keys = [r["sort_key"] for r in rows[n_bad:]]
    assert keys == sorted(keys, reverse=True)


def test_ties_go_to_the_longer_wait_then_to_input_order():
    cfg = TriageConfig(weights={"wait": 0.0})  # the wait adds nothing: equal priorities, different waits
    records = [
        rec("new", 0.7, minutes_ago=10),
        rec("old", 0.7, minutes_ago=90),
        rec("first", 0.2, minutes_ago=5),
        rec("second", 0.2, minutes_ago=5),
    ]
    rows = build_worklist(records, cfg, finding, now=NOW)
    assert rows[0]["priority"] == rows[1]["priority"] == 7.0
    assert [r["study"] for r in rows] == ["old", "new", "first", "second"]


def test_state_survives_a_rerun_with_a_new_study_and_files_are_atomic(tmp_path, monkeypatch):
    cfg = TriageConfig()
    out = tmp_path / "worklist"
    rows = build_worklist([rec("a", 0.9, 30), rec("b", 0.1, 20)], cfg, finding, now=NOW)
    paths = write_worklist(rows, out, cfg)
    assert set(paths) == {"csv", "json", "html", "state"}
    entry = mark_read(out, "b", "dr-lee", finding="normal")
    assert entry["status"] == "read" and entry["read_by"] == "dr-lee"
    assert load_state(out)["b"]["finding"] == "normal"
    saved = json.loads((out / "worklist.json").read_text())
    assert {r["study"]: r["status"] for r in saved["rows"]} == {"a": "unread", "b": "read"}
    assert saved["config"]["weights"]["finding"] == 10.0

    # re-run with one new study, not passing the state: the file's "read" wins
    records = [rec("a", 0.9, 40), rec("b", 0.1, 30), rec("c", 0.5, 1)]
    rows = build_worklist(records, cfg, finding, now=NOW)
    write_worklist(rows, out, cfg)
    with open(out / "worklist.csv", newline="") as fh:
        status = {r["study"]: r["status"] for r in csv.DictReader(fh)}
    assert status == {"a": "unread", "b": "read", "c": "unread"}
    assert load_state(out)["b"]["read_by"] == "dr-lee" and load_state(out)["c"]["status"] == "unread"
    # passing the state gives the same rows
    again = build_worklist(records, cfg, finding, now=NOW, state=load_state(out))
    assert {r["study"]: r["status"] for r in again} == status
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]

    # a write that fails half-way leaves the earlier files whole and no temporary file behind
    before = (out / "worklist.csv").read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_worklist(build_worklist([rec("d", 0.3, 1)], cfg, finding, now=NOW), out, cfg)
    monkeypatch.undo()
    assert (out / "worklist.csv").read_bytes() == before
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(MedlensError, match="not on the worklist"):
        mark_read(out, "nope", "dr-lee")


def test_html_is_self_contained_and_escapes_markup_in_names(tmp_path):
    cfg = TriageConfig()
    evil = rec("<script>alert(1)</script>", 0.9, 30)
    evil["input"] = "in/<script>alert(1)</script>.png"
    rows = build_worklist([evil, rec("z", error="zero-byte file", minutes_ago=3)], cfg, finding, now=NOW)
    html = write_worklist(rows, tmp_path, cfg)["html"].read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html
    assert 'class="unreadable' in html and "read first, unreadable: zero-byte file" in html
    assert 'href="explain/%3Cscript%3Ealert%281%29%3C/script%3E.png"' in html
    assert 'finding</td><td class="num">10' in html  # the weights are shown


def test_a_weighted_column_nobody_has_is_refused():
    with pytest.raises(MedlensError, match="weighs 'smokr'"):
        build_worklist([rec("a")], TriageConfig(weights={"smokr": 1.0}), finding, now=NOW)


def test_two_studies_with_one_id_get_their_own_ids_and_mark_read_reads_only_one(tmp_path):
    cfg = TriageConfig()
    a, b = rec("S1", 0.9, 30), rec("S1", 0.2, 20)
    b["input"] = "in/other.png"
    rows = build_worklist([a, b, rec("S2", 0.5, 10)], cfg, finding, now=NOW)
    ids = {r["input"]: r["study"] for r in rows}
    assert ids == {"in/S1.png": "S1#1", "in/other.png": "S1#2", "in/S2.png": "S2"}
    assert {r["study_given"] for r in rows if r["study"].startswith("S1#")} == {"S1"}
    out = tmp_path / "wl"
    write_worklist(rows, out, cfg)
    # the id as given names two studies: refused, naming both
    with pytest.raises(
        MedlensError,
        match=r"'S1' names 2 studies of the worklist .*: S1#1 \(in/S1.png\), S1#2 \(in/other.png\)",
    ):
        mark_read(out, "S1", "dr-a")
    mark_read(out, "S1#2", "dr-a")
    saved = json.loads((out / "worklist.json").read_text())
    assert {r["input"]: r["status"] for r in saved["rows"]} == {
        "in/S1.png": "unread",
        "in/other.png": "read",
        "in/S2.png": "unread",
    }


def test_mark_read_refuses_an_id_that_names_two_rows_of_an_older_worklist(tmp_path):
    cfg = TriageConfig()
    rows = build_worklist([rec("S1", 0.9, 30), rec("S2", 0.2, 20)], cfg, finding, now=NOW)
    out = tmp_path / "wl"
    write_worklist(rows, out, cfg)
    data = json.loads((out / "worklist.json").read_text())
    data["rows"][1]["study"] = "S1"  # as worklists written before ids were made unique could hold
    (out / "worklist.json").write_text(json.dumps(data))
    with pytest.raises(MedlensError, match="names 2 studies of the worklist"):
        mark_read(out, "S1", "dr-a")
    assert load_state(out)["S1"]["status"] == "unread"


def test_every_read_is_kept_one_current_read_per_reader(tmp_path):
    cfg = TriageConfig()
    out = tmp_path / "wl"
    write_worklist(build_worklist([rec("a", 0.9, 30)], cfg, finding, now=NOW), out, cfg)
    first = mark_read(out, "a", "dr-a", finding="glioma")
    assert first["reads"] == [{"reader": "dr-a", "read_at": first["read_at"], "finding": "glioma"}]
    second = mark_read(out, "a", "dr-b", finding="normal")
    # the contract's keys give the latest read; "reads" keeps every reader's
    assert second["read_by"] == "dr-b" and second["finding"] == "normal" and second["status"] == "read"
    assert [(r["reader"], r["finding"]) for r in second["reads"]] == [("dr-a", "glioma"), ("dr-b", "normal")]
    again = mark_read(out, "a", "dr-a", finding="meningioma")  # dr-a changes their mind: one read each
    assert [(r["reader"], r["finding"]) for r in again["reads"]] == [
        ("dr-b", "normal"),
        ("dr-a", "meningioma"),
    ]
    state = load_state(out)["a"]
    assert state["reads"] == again["reads"] and state["read_by"] == "dr-a"
    saved = json.loads((out / "worklist.json").read_text())["rows"][0]
    assert [r["reader"] for r in saved["reads"]] == ["dr-b", "dr-a"]
    with open(out / "worklist.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["read_by"] == "dr-a" and json.loads(row["reads"])[0]["reader"] == "dr-b"
    # a rebuild keeps them all
    write_worklist(build_worklist([rec("a", 0.9, 30)], cfg, finding, now=NOW), out, cfg)
    assert [r["reader"] for r in load_state(out)["a"]["reads"]] == ["dr-b", "dr-a"]


def test_a_worklist_folder_belongs_to_one_run(tmp_path):
    cfg = TriageConfig()
    out = tmp_path / "wl"
    cls = {"path": "/runs/cls", "task": "classification"}
    write_worklist(build_worklist([rec("a", 0.9, 30)], cfg, finding, now=NOW), out, cfg, run=cls)
    mark_read(out, "a", "dr-a")
    assert json.loads((out / "worklist.json").read_text())["run"] == cls  # kept by mark-read
    write_worklist(build_worklist([rec("b", 0.9, 30)], cfg, finding, now=NOW), out, cfg, run=cls)
    before = (out / "worklist.json").read_bytes()
    seg = {"path": "/runs/seg", "task": "segmentation"}
    with pytest.raises(MedlensError, match=r"holds the worklist of run /runs/cls \(classification\)"):
        write_worklist(build_worklist([rec("c", 0.9, 30)], cfg, finding, now=NOW), out, cfg, run=seg)
    assert (out / "worklist.json").read_bytes() == before


def test_cli_mark_read_says_who_read_the_study_before(tmp_path, monkeypatch, capsys):
    from cli_helpers import run_cli

    cfg = TriageConfig()
    out = tmp_path / "wl"
    write_worklist(build_worklist([rec("a", 0.9, 30)], cfg, finding, now=NOW), out, cfg)
    code, text, err = run_cli(
        monkeypatch, capsys, "mark-read", out, "a", "--reader", "dr-a", "--finding", "x"
    )
    assert code == 0 and "already read" not in text, err
    code, text, err = run_cli(monkeypatch, capsys, "mark-read", out, "a", "--reader", "dr-b")
    assert code == 0, err
    assert "a: read by dr-b at " in text and "; already read by dr-a at " in text and "(finding: x)" in text
    assert [r["reader"] for r in load_state(out)["a"]["reads"]] == ["dr-a", "dr-b"]
