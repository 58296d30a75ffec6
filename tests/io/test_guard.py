"""The read guard's checks on model files: declared sizes before anything is inflated."""

from __future__ import annotations

import pytest
import torch
from runfile_helpers import zip_bomb

from medlens.errors import MedlensError
from medlens.io import archives
from medlens.io.archives import check_zip_inflation
from medlens.io.guard import load_torch_file


def test_zip_bomb_model_file_is_refused_before_torch_load(tmp_path, monkeypatch):
    path = zip_bomb(tmp_path / "model.pt")
    assert path.stat().st_size < 1024 * 1024

    def never(*_a, **_k):
        raise AssertionError("torch.load was called on a zip bomb")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(MedlensError, match=r"declare 80\.0 MiB once inflated") as err:
        load_torch_file(path, "model file")
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_honest_checkpoint_passes_the_inflation_check(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    torch.save({"w": torch.randn(64, 64)}, path)
    monkeypatch.setattr(archives, "INFLATION_FLOOR_MB", 0.0)  # no floor: stored records have ratio ~1
    check_zip_inflation(path, "model file")
    assert load_torch_file(path)["w"].shape == (64, 64)


def test_inflation_check_leaves_non_zip_files_to_their_reader(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not a zip at all" * 100)
    check_zip_inflation(path, "model file")  # no opinion
    with pytest.raises(MedlensError, match="is not a readable PyTorch state dict"):
        load_torch_file(path)


def test_a_content_dependent_ratio_can_be_left_out_but_not_the_total(tmp_path):
    path = zip_bomb(tmp_path / "cache.npz", inflated_mb=80)
    check_zip_inflation(path, "cache", max_ratio=None)  # zeros deflate 1000x: fine without a ratio limit
    with pytest.raises(MedlensError, match="more than the 64.0 MiB"):
        check_zip_inflation(path, "cache", limit_mb=64, max_ratio=None)
