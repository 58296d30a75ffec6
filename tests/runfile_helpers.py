"""Builders of damaged run files shared by the unit tests and the hostile-input corpus."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch


def zip_bomb(path: Path, inflated_mb: int = 80) -> Path:
    """A real torch.save archive plus one deflated record of zeros: ~80 KB on disk, ``inflated_mb`` MiB
    declared (written in 1 MiB chunks, so building it costs no memory)."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        info = zipfile.ZipInfo("archive/data/bomb")
        info.compress_type = zipfile.ZIP_DEFLATED
        with dst.open(info, "w", force_zip64=True) as fh:
            chunk = bytes(1024 * 1024)
            for _ in range(inflated_mb):
                fh.write(chunk)
    return path


def damage_model(path: Path, change) -> Path:
    """Load a medlens model file, apply ``change(payload)`` and save it back (a hand-edited model.pt)."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path
