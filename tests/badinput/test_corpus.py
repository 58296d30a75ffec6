"""Run every case of the hostile-input corpus through the medlens CLI (in-process)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from cli_helpers import run_cli
from conftest import make_class_folders

from badinput.cases import CASES, TRAIN, UNET3D, Case, Ctx

DOC = Path(__file__).resolve().parents[2] / "docs" / "robustness.md"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """Runs shared by the cases, trained on first use: cls (logreg, 16 px), seg3d (tiny 3D UNet)."""
    root = tmp_path_factory.mktemp("badinput-runs")
    trained: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in trained:
            if name == "cls":
                args = [
                    "train",
                    make_class_folders(root / "data", n_per_class=6, size=16),
                    "-o",
                    root / name,
                    *TRAIN,
                ]
            else:
                from seg_phantoms import make_spheres

                args = [
                    "train",
                    make_spheres(root / "vols", n_cases=4, shape=(16, 16, 16)),
                    "-o",
                    root / name,
                    *UNET3D,
                ]
            mp = pytest.MonkeyPatch()
            mp.setattr(sys, "argv", ["medlens", *map(str, args)])
            with pytest.raises(SystemExit) as e:
                from medlens.cli import main

                main()
            mp.undo()
            assert e.value.code in (0, None), name
            trained[name] = root / name
        return trained[name]

    return get


LITTER = re.compile(r"\.partial$|\.tmp")


def _params():
    for c in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else []
        marks += [pytest.mark.skip(reason=c.skip)] if c.skip else []
        yield pytest.param(c, id=c.id, marks=marks)


@pytest.mark.slow
@pytest.mark.parametrize("case", _params())
def test_case(case: Case, runs, tmp_path, monkeypatch, capsys):
    ctx = Ctx(tmp_path, runs)
    argv = case.build(ctx)
    before = set(tmp_path.rglob("*"))
    capsys.readouterr()  # a shared run trained during build prints its summary: not this case's output
    code, out, err = run_cli(monkeypatch, capsys, *argv)
    both = out + err
    shown = f"\n--- medlens {' '.join(map(str, argv))}\n--- exit {code}\n--- stdout\n{out}\n--- stderr\n{err}"
    assert "Traceback" not in both, shown
    assert "internal error" not in both, shown
    assert code == case.code, shown
    text = _unescaped((tmp_path / case.where).read_text(encoding="utf-8") if case.where else both)
    assert case.message in text, (case.where or "terminal") + shown
    if code != 0:
        litter = [p for p in set(tmp_path.rglob("*")) - before if LITTER.search(p.name)]
        assert not litter, f"left behind: {litter}" + shown
    if case.check:
        case.check(ctx, both)


def _unescaped(text: str) -> str:
    """JSON output (--json, train.json, audit.json) escapes "×" and "é"; add the text as a user reads it."""
    try:
        return text + "\n" + json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        return text


def test_exif_orientation_is_applied(tmp_path):
    from badinput import make
    from medlens.io import read_image

    assert read_image(make.exif_jpeg(tmp_path / "e.jpg", width=40, height=20, orientation=6)).shape == (
        40,
        20,
    )
    assert read_image(make.exif_jpeg(tmp_path / "n.jpg", width=40, height=20, orientation=1)).shape == (
        20,
        40,
    )


def test_corpus_is_large_and_documented():
    assert len(CASES) >= 85
    assert len({c.id for c in CASES}) == len(CASES)
    documented = set(
        re.findall(r"^\| `([a-z0-9-]+)` \|", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    )
    missing = [c.id for c in CASES if c.id not in documented]
    assert not missing, f"cases missing from {DOC.name}: {missing}"
