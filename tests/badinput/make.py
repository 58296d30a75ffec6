"""File builders for the hostile-input corpus, run at test time (most written by hand with struct/zlib)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def bomb_png(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A ~70-byte PNG whose IHDR declares width × height 8-bit grayscale pixels (one tiny IDAT)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0\0"))
        + _chunk(b"IEND", b"")
    )
    path.write_bytes(png)
    return path


def zeros_png(path: Path, side: int = 12000) -> Path:
    """A genuine side × side grayscale PNG of zeros (~140 KB for 12000), compressed one row at a time."""
    comp, row = zlib.compressobj(9), b"\0" * (side + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )
    return path


def _tiff(path: Path, width: int, height: int, strip: bytes, compression: int, bits: int = 8) -> Path:
    """A minimal little-endian one-strip grayscale TIFF written with struct."""
    tags = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, bits),
        (259, 3, compression),
        (262, 3, 1),
        (273, 4, 0),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, len(strip)),
    ]
    ifd_size = 2 + 12 * len(tags) + 4
    data_offset = 8 + ifd_size
    entries = b"".join(
        struct.pack("<HHII", tag, typ, 1, data_offset if tag == 273 else value)
        if typ == 4
        else struct.pack("<HHIHH", tag, typ, 1, value, 0)
        for tag, typ, value in tags
    )
    path.write_bytes(
        b"II*\0"
        + struct.pack("<I", 8)
        + struct.pack("<H", len(tags))
        + entries
        + struct.pack("<I", 0)
        + strip
    )
    return path


def bomb_tiff(path: Path, side: int = 40000) -> Path:
    """An uncompressed TIFF declaring side × side 8-bit pixels but holding 16 bytes."""
    return _tiff(path, side, side, b"\0" * 16, compression=1)


def deflate_bomb_tiff(path: Path, side: int = 30000, mb: int = 16) -> Path:
    """A deflate TIFF declaring side × side 8-bit pixels; its strip inflates to ``mb`` MiB of zeros."""
    comp, block = zlib.compressobj(9), b"\0" * (1 << 20)
    strip = b"".join(comp.compress(block) for _ in range(mb)) + comp.flush()
    return _tiff(path, side, side, strip, compression=8)


def float_tiff(path: Path, bad: float | None = np.nan, size: int = 16) -> Path:
    """A float32 TIFF, with one ``bad`` value (NaN, inf) unless None."""
    import tifffile

    arr = np.random.default_rng(0).random((size, size), dtype=np.float32)
    if bad is not None:
        arr[3, 4] = bad
    tifffile.imwrite(path, arr)
    return path


def multipage_tiff(path: Path, pages: int = 5, size: int = 16) -> Path:
    import tifffile

    tifffile.imwrite(path, (np.arange(pages * size * size) % 251).astype(np.uint8).reshape(pages, size, size))
    return path


def exif_jpeg(path: Path, width: int = 40, height: int = 20, orientation: int = 6) -> Path:
    """A width × height JPEG whose EXIF orientation says to rotate it (6: 90° clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.full((height, width), 128, np.uint8)).save(path, exif=exif)
    return path


def gif_frames(path: Path, frames: int = 3, size: int = 16) -> Path:
    ims = [Image.fromarray(np.full((size, size), 40 * i, np.uint8)) for i in range(frames)]
    ims[0].save(path, save_all=True, append_images=ims[1:])
    return path


def png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    im = Image.fromarray(array)
    if mode:
        im = im.convert(mode)
    im.save(path)
    return path


def gray_png(path: Path, size: int = 16, value: int = 90) -> Path:
    return png(path, np.full((size, size), value, np.uint8))


def cut(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to a fraction (float) or a number of bytes (int) of its length."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    return path


def dicom_testfile(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name))


def copy_dicom(path: Path, name: str = "CT_small.dcm") -> Path:
    path.write_bytes(dicom_testfile(name).read_bytes())
    return path


def dicom_without_pixels(path: Path) -> Path:
    import pydicom

    ds = pydicom.dcmread(dicom_testfile("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(path)
    return path


def dicom_huge(path: Path, rows: int = 40000, cols: int = 40000) -> Path:
    """CT_small.dcm whose header declares rows × columns (its pixel data unchanged)."""
    import pydicom

    ds = pydicom.dcmread(dicom_testfile("CT_small.dcm"))
    ds.Rows, ds.Columns = rows, cols
    ds.save_as(path)
    return path


def nifti(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as NIfTI with nibabel directly (no medlens checks: any shape, NaN allowed)."""
    import nibabel as nib

    nib.save(nib.Nifti1Image(array, np.eye(4)), str(path))
    return path


def nifti_huge(path: Path, shape=(4000, 4000, 4000)) -> Path:
    """A .nii header declaring ``shape`` float32 voxels with 64 bytes of data."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape(shape)
    header["vox_offset"] = 352
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 64)
    return path


def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def pickled_npz(path: Path) -> Path:
    """An npz whose array holds Python objects (loading it would need allow_pickle=True)."""
    np.savez(path, train_images=np.array([{"a": 1}, None], dtype=object), train_labels=np.array([0, 1]))
    return path


def mnist_npz(
    path: Path, n: int = 12, size: int = 16, dtype=np.uint8, nan: bool = False, labels: int | None = None
) -> Path:
    """MedMNIST-style npz (train/val images and labels) of two learnable classes."""
    rng = np.random.default_rng(0)
    out = {}
    for split in ("train", "val"):
        y = np.arange(n) % 2
        x = (rng.normal(60, 10, (n, size, size)) + 120 * y[:, None, None]).clip(0, 255).astype(dtype)
        if nan:
            x[0, 2, 2] = np.nan
        out[f"{split}_images"], out[f"{split}_labels"] = x, y[: labels or n, None]
    return npz(path, **out)


def csv(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path
