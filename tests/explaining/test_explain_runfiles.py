"""The run files explain reads: a damaged embedding-index cache is rebuilt with a note (never an internal
error), and --localisation with a source that has no masks is one line."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest

import medlens
from medlens.errors import MedlensError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_folders):
    root = tmp_path_factory.mktemp("explain-runfiles")
    data = make_folders(root / "data", n_per_class=6, size=16)
    run = medlens.train(data, root / "run", model="logreg", epochs=1, image_size=16, progress=False)
    # the first explanation builds the index
    medlens.explain(run, [next((data / "cyst").iterdir())], root / "first", progress=False)
    assert (run / "explain_index.npz").is_file()
    return run


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the run (with its index) beside a copy of its data, so the manifest's paths resolve."""
    shutil.copytree(trained.parent / "data", tmp_path / "data")
    return shutil.copytree(trained, tmp_path / "run")


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _good(run):
    with np.load(run / "explain_index.npz") as a:
        return a["train"], a["val_scores"]


DAMAGES = {
    "random-bytes": lambda run: b"\x00garbage" * 64,
    "truncated": lambda run: (run / "explain_index.npz").read_bytes()[:100],
    "pickled": lambda run: _npz(train=np.array([{"a": 1}], dtype=object), val_scores=np.ones(2)),
    "wrong-keys": lambda run: _npz(embeddings=_good(run)[0], scores=_good(run)[1]),
    "flat-embeddings": lambda run: _npz(train=_good(run)[0].ravel(), val_scores=_good(run)[1]),
    "nan": lambda run: _npz(train=_good(run)[0] * np.nan, val_scores=_good(run)[1]),
    "other-width": lambda run: _npz(train=_good(run)[0][:, :3], val_scores=_good(run)[1]),
    "fewer-rows": lambda run: _npz(train=_good(run)[0][:2], val_scores=_good(run)[1]),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_index_cache_is_rebuilt_with_a_note(run, tmp_path, damage):
    train_before = _good(run)[0]
    (run / "explain_index.npz").write_bytes(DAMAGES[damage](run))
    image = next((tmp_path / "data" / "cyst").iterdir())
    result = medlens.explain(run, [image], tmp_path / "out", progress=False)
    assert "explain_index.npz was damaged" in result["index_note"], result["index_note"]
    assert "it is a cache, so it was rebuilt" in result["index_note"]
    assert result["index"]["training_cases"] == len(train_before)
    assert len(result["cases"][0]["similar"]) == 5 and "ood" in result["cases"][0]
    np.testing.assert_array_equal(_good(run)[0], train_before)  # the cache on disk is whole again
    again = medlens.explain(run, [image], tmp_path / "again", progress=False)
    assert again["index_note"] is None  # read from the rebuilt cache, nothing to say


def test_a_damaged_index_description_is_rebuilt_with_a_note(run, tmp_path):
    (run / "explain_index.json").write_text("{not json")
    image = next((tmp_path / "data" / "cyst").iterdir())
    result = medlens.explain(run, [image], tmp_path / "out", progress=False)
    assert "explain_index.json was unreadable" in result["index_note"]
    assert json.loads((run / "explain_index.json").read_text())["version"] == 1


def test_localisation_source_without_masks_is_one_line(run, tmp_path):
    with pytest.raises(MedlensError) as err:
        medlens.explain(run, [], tmp_path / "loc", localisation=tmp_path / "data", progress=False)
    text = str(err.value)
    assert f"--localisation {tmp_path / 'data'} has no lesion masks" in text and "\n" not in text


def test_an_index_declaring_more_than_the_limit_is_never_inflated(run, tmp_path, monkeypatch):
    from medlens.explaining import embedding

    monkeypatch.setattr(embedding, "INDEX_MAX_MB", 0.001)  # the run's index declares more than 1 KiB
    image = next((tmp_path / "data" / "cyst").iterdir())
    result = medlens.explain(run, [image], tmp_path / "out", progress=False)
    assert "explain_index.npz was damaged" in result["index_note"] and "once inflated" in result["index_note"]
