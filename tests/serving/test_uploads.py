"""Upload safety: uploads get server-chosen names and size caps; bad zips are refused before harm is done."""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
import zipfile
from pathlib import Path

import pytest

from medlens.errors import MedlensError
from medlens.serving import uploads
from medlens.serving.uploads import Limits, UploadRejected, safe_extract, save_upload, suffix_of

MiB = 2**20

# --- helpers --------------------------------------------------------------------------------------------


def zip_bytes(members, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip built in memory from (name or ZipInfo, data) pairs; a name ending in "/" is a folder entry."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names on purpose
        with zipfile.ZipFile(buf, "w", compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return buf.getvalue()


def patch_headers(data: bytes, *, flags: int | None = None, file_size: int | None = None) -> bytes:
    """Overwrite fields of the (only) member's local header and central directory entry."""
    out = bytearray(data)
    local, central = out.index(b"PK\x03\x04"), out.index(b"PK\x01\x02")
    if flags is not None:
        struct.pack_into("<H", out, local + 6, flags)
        struct.pack_into("<H", out, central + 8, flags)
    if file_size is not None:
        struct.pack_into("<I", out, local + 22, file_size)
        struct.pack_into("<I", out, central + 24, file_size)
    return bytes(out)


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    """(where the uploaded zip lives, the extraction target whose parent holds nothing else)."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path / "in" / "upload.zip", tmp_path / "out" / "dataset"


def refused(zip_path: Path, dest: Path, data: bytes, limits: Limits | None = None) -> UploadRejected:
    """Write ``data`` as the upload, check safe_extract refuses it with 400 and leaves nothing behind."""
    zip_path.write_bytes(data)
    with pytest.raises(UploadRejected) as info:
        safe_extract(zip_path, dest, limits or Limits(), name="my data.zip")
    err = info.value
    assert err.status == 400
    assert "\n" not in str(err) and "my data.zip" in str(err)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no temporary folder left over
    return err


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --- suffix_of ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("scan.png", ".png"),
        ("SCAN.JPG", ".jpg"),
        ("a.jpeg", ".jpeg"),
        ("x.TIFF", ".tiff"),
        ("brain.nii.gz", ".nii.gz"),
        ("BRAIN.NII.GZ", ".nii.gz"),
        ("brain.nii", ".nii"),
        ("data.zip", ".zip"),
        ("arrays.npz", ".npz"),
        ("IM0001.dicom", ".dicom"),
        ("../../x.png", ".png"),
        ("C:\\a\\b.dcm", ".dcm"),
        ("/etc/passwd", ""),
        ("IM0001", ""),
        ("1.2.840.113619.2.55.3", ""),
        ("notes.txt", ""),
        ("archive.tar.gz", ""),
        (".png", ""),
        ("", ""),
        ("dir/", ""),
        ("a.png\x00.exe", ""),
        ("weird\nname.bmp", ".bmp"),
    ],
)
def test_suffix_of(name: str, suffix: str) -> None:
    assert suffix_of(name) == suffix


def test_suffix_of_never_raises() -> None:
    assert suffix_of(None) == ""  # type: ignore[arg-type]
    assert suffix_of("\\\\server\\share\\..\\x.nii.gz") == ".nii.gz"


# --- save_upload ----------------------------------------------------------------------------------------


def test_save_upload_writes_a_new_server_named_file(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 17)
    path = save_upload(io.BytesIO(data), tmp_path / "up", suffix=".PNG", limit=len(data))
    assert path.parent == tmp_path / "up"
    assert path.suffix == ".png" and len(path.stem) == 32 and int(path.stem, 16) >= 0
    assert path.read_bytes() == data
    assert os.listdir(tmp_path / "up") == [path.name]  # no temporary file left
    other = save_upload(io.BytesIO(b"x"), tmp_path / "up", suffix=".nii.gz", limit=10)
    assert other.name.endswith(".nii.gz") and other != path
    dicom = save_upload(io.BytesIO(b"DICM"), tmp_path / "up", suffix="", limit=10)
    assert dicom.suffix == "" and dicom.read_bytes() == b"DICM"


def test_save_upload_over_limit_leaves_no_file(tmp_path: Path) -> None:
    stream = io.BytesIO(b"\0" * (5 * MiB))
    with pytest.raises(UploadRejected) as info:
        save_upload(stream, tmp_path, suffix=".zip", limit=MiB, name="big.zip")
    assert info.value.status == 413
    assert "big.zip" in str(info.value) and "1 MiB" in str(info.value)
    assert os.listdir(tmp_path) == []
    assert stream.tell() <= MiB + 1  # stopped reading right after the limit


def test_save_upload_refuses_a_bad_suffix(tmp_path: Path) -> None:
    for suffix in (".exe", ".png/../../x", "../x.png", ".gz"):
        with pytest.raises(UploadRejected) as info:
            save_upload(io.BytesIO(b"x"), tmp_path / "up", suffix=suffix, limit=10)
        assert info.value.status == 415
        assert "\n" not in str(info.value)
    assert not (tmp_path / "up").exists()


def test_save_upload_removes_the_partial_file_when_the_stream_fails(tmp_path: Path) -> None:
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise ConnectionResetError("client went away")
            return b"x" * min(n, 1000)

    with pytest.raises(ConnectionResetError):
        save_upload(Broken(), tmp_path, suffix=".png", limit=MiB)
    assert os.listdir(tmp_path) == []


def test_upload_rejected_is_a_one_line_medlens_error() -> None:
    err = UploadRejected("too big:\nupload less", status=413)
    assert isinstance(err, MedlensError)
    assert err.status == 413 and str(err) == "too big: upload less"
    assert UploadRejected("bad").status == 400


# --- safe_extract: valid archives -----------------------------------------------------------------------


def test_extracts_nested_class_folders_and_skips_junk(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    zip_path.write_bytes(
        zip_bytes(
            [
                ("data/", b""),
                ("data/cyst/", b""),
                ("data/cyst/a.png", b"cyst-a"),
                ("data/cyst/._a.png", b"resource fork"),
                ("data/normal/b.png", b"normal-b"),
                ("data/normal/deeper/c.dcm", b"dicom-c"),
                ("data/.DS_Store", b"finder"),
                ("__MACOSX/data/cyst/._a.png", b"resource fork"),
                ("data/normal/Thumbs.db", b"explorer"),
                ("data/empty.png", b""),
            ]
        )
    )
    files = safe_extract(zip_path, dest, Limits())
    assert files == [
        dest / "data" / "cyst" / "a.png",
        dest / "data" / "normal" / "b.png",
        dest / "data" / "normal" / "deeper" / "c.dcm",
        dest / "data" / "empty.png",
    ]
    assert files_under(dest) == [
        "data/cyst/a.png",
        "data/empty.png",
        "data/normal/b.png",
        "data/normal/deeper/c.dcm",
    ]
    assert (dest / "data" / "cyst" / "a.png").read_bytes() == b"cyst-a"
    assert (dest / "data" / "normal" / "deeper" / "c.dcm").read_bytes() == b"dicom-c"
    assert sorted(os.listdir(dest.parent)) == ["dataset"]  # the temporary folder was renamed into place


def test_extracts_into_an_existing_empty_folder_only(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    zip_path.write_bytes(zip_bytes([("a.png", b"a")]))
    dest.mkdir()
    assert safe_extract(zip_path, dest, Limits()) == [dest / "a.png"]
    with pytest.raises(FileExistsError):
        safe_extract(zip_path, dest, Limits())
    assert files_under(dest) == ["a.png"]
    assert sorted(os.listdir(dest.parent)) == ["dataset"]


def test_small_compressible_members_are_exempt_from_the_ratio_check(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    zip_path.write_bytes(zip_bytes([("labels.csv", b"0," * 200_000), ("b.txt", b" " * 300_000)]))
    files = safe_extract(zip_path, dest, Limits(max_ratio=10))
    assert [f.name for f in files] == ["labels.csv", "b.txt"]


def test_directories_and_junk_do_not_count_as_files(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    members = [("a/", b""), ("a/1.png", b"1"), ("a/2.png", b"2"), ("a/._2.png", b"x"), ("a/.DS_Store", b"x")]
    zip_path.write_bytes(zip_bytes(members))
    assert len(safe_extract(zip_path, dest, Limits(max_files=2))) == 2


# --- safe_extract: refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../evil.png",
        "/abs.png",
        "a/../../b.png",
        "a/..",
        "..\\evil.png",
        "a\\..\\..\\evil.png",
        "\\abs.png",
        "C:\\windows\\evil.png",
        "C:evil.png",
        "c:/evil.png",
        "a//b.png",
        "./a.png",
        "a/./b.png",
        "ok\nname.png",
        "x" * 300 + ".png",
    ],
)
def test_refuses_unsafe_member_paths(paths: tuple[Path, Path], name: str) -> None:
    zip_path, dest = paths
    err = refused(zip_path, dest, zip_bytes([("good/first.png", b"fine"), (name, b"evil")]))
    assert "not allowed" in str(err)


def test_refuses_a_nul_in_a_member_name(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = zip_bytes([("aXb.png", b"x")]).replace(b"aXb.png", b"a\0b.png")
    assert "control character" in str(refused(zip_path, dest, data))


def test_refuses_a_symlink_member(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    link = zipfile.ZipInfo("images/link.png")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    err = refused(zip_path, dest, zip_bytes([("images/a.png", b"a"), (link, b"/etc/passwd")]))
    assert "symbolic link" in str(err)


def test_refuses_an_encrypted_member(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = patch_headers(zip_bytes([("a.png", b"secret")]), flags=0x1)
    assert "encrypted" in str(refused(zip_path, dest, data))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not a zip at all",
        b"PK\x03\x04" + b"\0" * 100,
        zip_bytes([("a.png", os.urandom(5000))])[:3000],  # truncated: the central directory is missing
    ],
)
def test_refuses_what_is_not_a_zip(paths: tuple[Path, Path], data: bytes) -> None:
    zip_path, dest = paths
    assert "not a readable zip" in str(refused(zip_path, dest, data))


def test_refuses_a_corrupt_member(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = bytearray(zip_bytes([("a.png", b"first"), ("b.png", os.urandom(4000))], zipfile.ZIP_STORED))
    start = data.index(b"b.png") + len(b"b.png") + 100
    data[start : start + 50] = b"\0" * 50  # the CRC no longer matches
    assert "corrupt" in str(refused(zip_path, dest, bytes(data)))


def test_refuses_duplicate_members_and_file_folder_clashes(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    refused(zip_path, dest, zip_bytes([("a/b.png", b"1"), ("a/b.png", b"2")]))
    refused(zip_path, dest, zip_bytes([("a", b"file"), ("a/b.png", b"2")]))
    refused(zip_path, dest, zip_bytes([("a/b.png", b"2"), ("a", b"file")]))


def test_refuses_too_many_files(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = zip_bytes([(f"cls/{i}.png", b"x") for i in range(4)])
    assert "4 files" in str(refused(zip_path, dest, data, Limits(max_files=3)))


def test_refuses_too_many_entries_before_listing_them(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = zip_bytes([(f"d{i}/", b"") for i in range(1010)])  # folders: cheap for the attacker, not for us
    assert "entries" in str(refused(zip_path, dest, data, Limits(max_files=1)))


def test_refuses_a_member_over_the_image_limit(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = zip_bytes([("a.png", b"a" * 100), ("big.png", os.urandom(2000))])
    assert "limit per image" in str(refused(zip_path, dest, data, Limits(max_image_bytes=1000)))


def test_refuses_more_than_the_total_uncompressed(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = zip_bytes([("a.png", os.urandom(600)), ("b.png", os.urandom(600))])
    assert "unpacks to more than" in str(refused(zip_path, dest, data, Limits(max_total_uncompressed=1000)))


def test_refuses_a_zip_bomb_by_ratio(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = zip_bytes([("ok.png", b"fine"), ("bomb.png", bytes(50 * 10**6))])
    assert len(data) < 100_000
    err = refused(zip_path, dest, data, Limits(max_image_bytes=100 * MiB))
    assert "zip bomb" in str(err) and "bomb.png" in str(err)


def test_refuses_a_bomb_of_many_small_members_by_overall_ratio(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = zip_bytes([(f"{i}.png", bytes(900_000)) for i in range(4)])
    err = refused(zip_path, dest, data)
    assert "zip bomb" in str(err) and "overall" in str(err)


def test_refuses_overlapping_members(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = bytearray(zip_bytes([("a.png", b"x" * 100)]))
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 20, 10**6)  # more compressed data than the file holds
    refused(zip_path, dest, bytes(data))


def test_refuses_a_member_whose_header_understates_its_size(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = patch_headers(zip_bytes([("a.png", os.urandom(3 * MiB))]), file_size=1000)
    refused(zip_path, dest, data, Limits(max_image_bytes=2 * MiB))


# --- the streaming checks on their own: the declared sizes are made to pass -------------------------------


@pytest.fixture
def trusting_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the checks on declared sizes, as if every header lied, so only the streaming checks remain."""
    monkeypatch.setattr(uploads, "_check_declared", lambda *args, **kwargs: None)


@pytest.mark.usefixtures("trusting_headers")
def test_streaming_catches_a_member_over_the_image_limit(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = zip_bytes([("a.png", b"fine"), ("big.png", os.urandom(5000))])
    assert "limit per image" in str(refused(zip_path, dest, data, Limits(max_image_bytes=1000)))


@pytest.mark.usefixtures("trusting_headers")
def test_streaming_catches_the_total(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = zip_bytes([(f"{i}.png", os.urandom(600)) for i in range(3)])
    assert "unpacks to more than" in str(refused(zip_path, dest, data, Limits(max_total_uncompressed=1000)))


@pytest.mark.usefixtures("trusting_headers")
def test_streaming_catches_a_bomb(paths: tuple[Path, Path]) -> None:
    zip_path, dest = paths
    data = zip_bytes([("ok.png", b"fine"), ("bomb.png", bytes(20 * MiB))])
    assert "zip bomb" in str(refused(zip_path, dest, data, Limits(max_image_bytes=100 * MiB)))


@pytest.mark.usefixtures("trusting_headers")
def test_a_valid_zip_passes_the_streaming_checks(
    paths: tuple[Path, Path],
) -> None:
    zip_path, dest = paths
    zip_path.write_bytes(zip_bytes([("a/b.png", b"b")]))
    assert safe_extract(zip_path, dest, Limits()) == [dest / "a" / "b.png"]


def test_streaming_catches_more_data_than_declared(paths: tuple[Path, Path], monkeypatch) -> None:
    zip_path, dest = paths
    zip_path.write_bytes(zip_bytes([("a.png", b"fine"), ("b.png", b"y" * 5000)]))
    real_open = zipfile.ZipFile.open

    def understated(self, info, *args, **kwargs):  # zipfile itself stops at the declared size: bypass it
        handle = real_open(self, info, *args, **kwargs)
        info.file_size = 100
        return handle

    monkeypatch.setattr(zipfile.ZipFile, "open", understated)
    assert "more data than its header declares" in str(refused(zip_path, dest, zip_path.read_bytes()))
