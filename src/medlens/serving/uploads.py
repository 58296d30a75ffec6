"""Upload safety: what a browser sends is saved and unpacked without trusting any of it.

Uploads arrive from people we do not control, so nothing they send is used as given. A file is streamed to a
name the server picks (never the user's file name) and is cut off as soon as it passes its size limit. A zip
is checked member by member before anything is written (paths that escape the target folder, symlinks,
encrypted members, too many files, zip bombs) and the same limits are enforced again on the bytes actually
decompressed, since a forged header can lie about sizes. Extraction goes to a temporary sibling folder that is
renamed into place only when every member passed, so a refused upload leaves nothing behind.

Refusals raise :class:`UploadRejected`, a :class:`~medlens.errors.MedlensError` with the HTTP status the
web app answers with; its one-line message names the user's file as text only.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import re
import shutil
import stat
import struct
import tempfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from medlens.errors import MedlensError

__all__ = ["SUFFIXES", "Limits", "UploadRejected", "safe_extract", "save_upload", "suffix_of"]

#: Suffixes an upload may be saved with ("" is a DICOM file without one). Multi-part suffixes come first.
SUFFIXES: tuple[str, ...] = (
    ".nii.gz",
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".bmp",
    ".dcm",
    ".dicom",
    ".nii",
    ".npz",
    ".zip",
    "",
)

_CHUNK = 2**20  # bytes read and written at a time
_RATIO_EXEMPT = 2**20  # members smaller than this (uncompressed) skip the per-member ratio check
_NAME_MAX = 255  # bytes per path component (ext4, APFS, NTFS)
_SHOWN_MAX = 120  # characters of a user's file name quoted in a message
_JUNK_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# What zipfile and its decompressors raise for a broken archive or member (bz2 raises OSError).
_CORRUPT: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    ValueError,
)


class UploadRejected(MedlensError):
    """An upload the server refuses; ``str(err)`` is one line for the user.

    Attributes:
        status: the HTTP status to answer with: 413 too large, 415 unsupported type, 400 or 422 bad content.
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        self.status = int(status)
        super().__init__(" ".join(str(message).split()))


@dataclass
class Limits:
    """Size limits for uploads and for what a zip may unpack to.

    Attributes:
        max_upload_bytes: largest request body (a single upload or a whole zip).
        max_image_bytes: largest single image: a direct upload, and each member of a zip once unpacked.
        max_files: most files a zip may hold (directories and macOS junk are not counted).
        max_total_uncompressed: most bytes a zip may unpack to in all.
        max_ratio: highest uncompressed/compressed ratio, per member (of at least 1 MiB) and overall.
    """

    max_upload_bytes: int = 2048 * 2**20
    max_image_bytes: int = 64 * 2**20
    max_files: int = 200_000
    max_total_uncompressed: int = 20 * 2**30
    max_ratio: float = 200.0


# --- Single files ---------------------------------------------------------------------------------------


def suffix_of(filename: str) -> str:
    """The lowercased known suffix of a user-supplied file name, or "" when it has none.

    Directory parts (``/`` or ``\\``) are dropped first, so ``../../x.png`` gives ".png" and ``C:\\a\\b.dcm``
    gives ".dcm"; ``scan.NII.GZ`` gives ".nii.gz". An unknown suffix (``notes.txt``, or the numeric tail of a
    DICOM name such as ``1.2.840.113619.2.55``) gives "", which :func:`save_upload` keeps as a DICOM file
    without a suffix. Never raises.

    Args:
        filename: the name the browser sent; any string (or None).

    Returns:
        One of :data:`SUFFIXES`.
    """
    if not isinstance(filename, str):
        return ""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip().lower()
    for suffix in SUFFIXES:
        if suffix and base.endswith(suffix) and len(base) > len(suffix):
            return suffix
    return ""


def save_upload(
    stream: BinaryIO, dest_dir: Path, *, suffix: str, limit: int, name: str | None = None
) -> Path:
    """Copy an uploaded file into a new server-chosen file in ``dest_dir``, refusing it past ``limit`` bytes.

    The data goes to a temporary file in ``dest_dir`` in 1 MiB chunks and is renamed to
    ``<uuid4 hex><suffix>`` only when complete; a refusal or any error (a dropped connection) deletes the
    partial file. The user's file name is never used as a path: pick ``suffix`` with :func:`suffix_of`.

    Args:
        stream: a binary file-like object (e.g. starlette's ``UploadFile.file``); read, not closed.
        dest_dir: the folder to save into (created if missing).
        suffix: one of :data:`SUFFIXES` ("" for DICOM without a suffix); matched case-insensitively.
        limit: the most bytes the file may hold.
        name: the user's name for the file, quoted in error messages only.

    Returns:
        The path of the saved file.

    Raises:
        UploadRejected: status 415 when ``suffix`` is not allowed, 413 when the data passes ``limit``.
    """
    what = f"the upload {_shown(name)}" if name else "the upload"
    if not isinstance(suffix, str) or suffix.lower() not in SUFFIXES:
        kinds = ", ".join(s for s in SUFFIXES if s)
        raise UploadRejected(
            f"{what} has an unsupported file type {_shown(str(suffix))}; upload one of {kinds} "
            "(or a DICOM file without a suffix)",
            status=415,
        )
    suffix = suffix.lower()
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        written = 0
        with os.fdopen(fd, "wb") as out:
            while True:
                # Never read more than one byte past the limit: that byte is enough to know it is too large.
                chunk = stream.read(min(_CHUNK, max(limit - written, 0) + 1))
                if not chunk:
                    break
                written += len(chunk)
                if written > limit:
                    raise UploadRejected(
                        f"{what} is larger than the {_size(limit)} limit; upload a smaller file "
                        "(or ask the administrator to raise the limit)",
                        status=413,
                    )
                out.write(chunk)
        final = dest_dir / f"{uuid.uuid4().hex}{suffix}"
        while final.exists():  # a uuid4 collision: practically never, but never overwrite a file
            final = dest_dir / f"{uuid.uuid4().hex}{suffix}"
        os.replace(tmp, final)
        return final
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# --- Zip archives ---------------------------------------------------------------------------------------


def safe_extract(zip_path: Path, dest_dir: Path, limits: Limits, *, name: str | None = None) -> list[Path]:
    """Extract a zip into ``dest_dir`` after checking every member, or refuse it and leave nothing behind.

    Member paths are kept (class folders and kaggle layouts survive) but every component is checked, and the
    resolved path must lie inside the target. Directory entries and macOS/Windows junk (``__MACOSX/``,
    ``.DS_Store``, ``._*``, ``Thumbs.db``) are skipped. The declared sizes are checked first, then the same
    limits are enforced on the bytes actually decompressed.

    Args:
        zip_path: the saved upload (from :func:`save_upload`).
        dest_dir: the folder to create; it must not exist yet, or be empty.
        limits: the limits to enforce.
        name: the user's name for the zip, quoted in error messages only (default: the file's name).

    Returns:
        The extracted files, as paths inside ``dest_dir``, in archive order.

    Raises:
        UploadRejected: status 400 when the file is not a readable zip, or any member breaks a rule or limit.
        FileExistsError: when ``dest_dir`` exists and is not an empty folder (a server-side mistake).
    """
    zip_path, dest_dir = Path(zip_path), Path(dest_dir)
    shown = _shown(name if name is not None else zip_path.name)
    if dest_dir.exists() and not (dest_dir.is_dir() and not any(dest_dir.iterdir())):
        raise FileExistsError(f"cannot extract into {dest_dir}: it exists and is not an empty folder")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".tmp", dir=dest_dir.parent))
    try:
        relative = _extract_into(zip_path, tmp, limits, shown)
        if dest_dir.exists():
            dest_dir.rmdir()  # empty (checked above); not every OS renames a folder onto an empty one
        os.rename(tmp, dest_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [dest_dir.joinpath(*parts) for parts in relative]


def _extract_into(zip_path: Path, root: Path, limits: Limits, shown: str) -> list[tuple[str, ...]]:
    """Check and extract every member into the (new, empty) folder ``root``; the relative paths written."""
    fix = "re-create the zip from the image folder and upload it again"
    zip_size = zip_path.stat().st_size
    _check_entry_count(zip_path, limits, shown)
    try:
        zf = zipfile.ZipFile(zip_path)
    except _CORRUPT as exc:
        raise UploadRejected(
            f"the upload {shown} is not a readable zip archive ({_reason(exc)}); {fix}"
        ) from exc
    with zf:
        infos = zf.infolist()
        members = _plan(infos, limits, shown, zip_size)
        compressed = sum(info.compress_size for info, _ in members)
        root_resolved = root.resolve()
        total = 0
        for info, parts in members:
            target = root.joinpath(*parts)
            resolved = target.resolve()
            if resolved == root_resolved or not resolved.is_relative_to(root_resolved):
                raise _unsafe(shown, info, "points outside the target folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            total = _copy_member(zf, info, target, limits, shown, total, compressed)
    return [parts for _, parts in members]


def _check_entry_count(zip_path: Path, limits: Limits, shown: str) -> None:
    """Refuse an archive whose end record declares far more entries than allowed, before zipfile lists them.

    zipfile holds every entry of the central directory in memory, so a zip of millions of empty entries would
    cost gigabytes before :func:`_plan` could count them. Directories and macOS junk entries are allowed for.
    Best effort: skipped when the end record cannot be read (zipfile then reports the archive as broken).
    """
    end_record = getattr(zipfile, "_EndRecData", None)  # private, stable since Python 2; guarded anyway
    if end_record is None:
        return
    try:
        with open(zip_path, "rb") as fh:
            record = end_record(fh)
        entries, cd_size = int(record[zipfile._ECD_ENTRIES_TOTAL]), int(record[zipfile._ECD_SIZE])
    except Exception:  # any failure here is zipfile's to report
        return
    max_entries = 2 * limits.max_files + 1000
    if entries > max_entries or cd_size > max_entries * 512:
        raise UploadRejected(
            f"the zip {shown} lists {entries} entries, more than the {limits.max_files} files allowed; "
            "upload fewer files per zip"
        )


def _plan(
    infos: list[zipfile.ZipInfo], limits: Limits, shown: str, zip_size: int
) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The members to extract with their checked relative paths; refuses the archive on any broken rule."""
    members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    seen: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()
    for info in infos:
        parts = _member_parts(info, shown)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _unsafe(shown, info, "is a symbolic link")
        if info.flag_bits & 0x1:
            raise UploadRejected(
                f"the zip {shown} has an encrypted member {_shown(info.orig_filename)}; "
                "zip the images without a password and upload again"
            )
        if info.is_dir() or _is_junk(parts):
            continue
        if parts in seen or parts in folders:
            raise _unsafe(shown, info, "appears twice (or is both a file and a folder)")
        seen.add(parts)
        folders.update(parts[:i] for i in range(1, len(parts)))
        members.append((info, parts))
    if seen & folders:
        clash = "/".join(sorted(seen & folders)[0])
        raise UploadRejected(
            f"the zip {shown} has {_shown(clash)} both as a file and as a folder; "
            "re-create the zip from the image folder and upload it again"
        )
    _check_declared(members, limits, shown, zip_size, sum(i.compress_size for i in infos))
    return members


def _check_declared(
    members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]],
    limits: Limits,
    shown: str,
    zip_size: int,
    all_compressed: int,
) -> None:
    """Refuse the archive when the sizes its headers declare break a limit (cheap, before any extraction)."""
    if len(members) > limits.max_files:
        raise UploadRejected(
            f"the zip {shown} holds {len(members)} files, more than the {limits.max_files} allowed; "
            "upload fewer files per zip"
        )
    if all_compressed > zip_size:
        raise UploadRejected(
            f"the zip {shown} declares more compressed data than the file holds (overlapping members, "
            "a zip bomb or a corrupt archive); re-create the zip from the image folder and upload it again"
        )
    total = compressed = 0
    for info, _ in members:
        size, packed = info.file_size, info.compress_size
        total += size
        compressed += packed
        if size > limits.max_image_bytes:
            raise _too_large(shown, info, limits)
        if packed > 0 and size >= _RATIO_EXEMPT and size / packed > limits.max_ratio:
            raise _bomb(shown, _shown(info.orig_filename), size / packed, limits)
    if total > limits.max_total_uncompressed:
        raise _too_much(shown, total, limits)
    if compressed > 0 and total >= _RATIO_EXEMPT and total / compressed > limits.max_ratio:
        raise _bomb(shown, "overall", total / compressed, limits)


def _copy_member(
    zf: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    limits: Limits,
    shown: str,
    total: int,
    compressed: int,
) -> int:
    """Stream one member to ``target``, enforcing the limits on the real bytes; the new running total."""
    fix = "re-create the zip from the image folder and upload it again"
    member = _shown(info.orig_filename)
    written = 0
    try:
        src = zf.open(info)
    except _CORRUPT as exc:
        raise UploadRejected(
            f"the zip {shown} member {member} cannot be read ({_reason(exc)}); {fix}"
        ) from exc
    with src, open(target, "xb") as out:
        while True:
            try:
                chunk = src.read(_CHUNK)
            except (*_CORRUPT, OSError) as exc:
                raise UploadRejected(
                    f"the zip {shown} member {member} is corrupt ({_reason(exc)}); {fix}"
                ) from exc
            if not chunk:
                break
            written += len(chunk)
            total += len(chunk)
            if written > info.file_size:
                raise UploadRejected(
                    f"the zip {shown} member {member} holds more data than its header declares "
                    f"(a forged or corrupt archive); {fix}"
                )
            if written > limits.max_image_bytes:
                raise _too_large(shown, info, limits)
            if total > limits.max_total_uncompressed:
                raise _too_much(shown, total, limits)
            if written >= _RATIO_EXEMPT and written / max(info.compress_size, 1) > limits.max_ratio:
                raise _bomb(shown, member, written / max(info.compress_size, 1), limits)
            if total >= _RATIO_EXEMPT and total / max(compressed, 1) > limits.max_ratio:
                raise _bomb(shown, "overall", total / max(compressed, 1), limits)
            out.write(chunk)
    return total


def _member_parts(info: zipfile.ZipInfo, shown: str) -> tuple[str, ...]:
    """The checked path components of a member (directory entries lose their trailing slash)."""
    raw = getattr(info, "orig_filename", info.filename)  # zipfile cuts the name at a NUL; the original has it
    if _CONTROL.search(raw):
        raise _unsafe(shown, info, "has a control character (such as NUL) in its name")
    name = raw.replace("\\", "/")
    if name.startswith("/"):
        raise _unsafe(shown, info, "has an absolute path")
    if _DRIVE.match(name):
        raise _unsafe(shown, info, "has a drive letter in its path")
    parts = name.split("/")
    if len(parts) > 1 and parts[-1] == "":  # a directory entry: "folder/"
        parts = parts[:-1]
    for part in parts:
        if part in ("", ".", ".."):
            label = f"a {part!r}" if part else "an empty"
            raise _unsafe(shown, info, f"has {label} path component")
        if len(part.encode("utf-8", "surrogateescape")) > _NAME_MAX:
            raise _unsafe(shown, info, f"has a path component longer than {_NAME_MAX} bytes")
    return tuple(parts)


def _is_junk(parts: tuple[str, ...]) -> bool:
    """macOS resource forks and Finder/Explorer metadata that zips carry along."""
    return "__MACOSX" in parts or parts[-1] in _JUNK_NAMES or parts[-1].startswith("._")


# --- Messages ---------------------------------------------------------------------------------------------


def _shown(name: str | None) -> str:
    """A user's file name as quoted, one-line text (control characters replaced, long names shortened)."""
    text = _CONTROL.sub("?", str(name))
    if len(text) > _SHOWN_MAX:
        text = text[: _SHOWN_MAX - 3] + "..."
    return repr(text)


def _size(n: float) -> str:
    """``n`` bytes as a short human size: "64 MiB", "2 GiB", "512 bytes"."""
    for unit, label in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= unit:
            return f"{n / unit:.1f}".rstrip("0").rstrip(".") + f" {label}"
    return f"{int(n)} bytes"


def _reason(exc: BaseException) -> str:
    """One line saying why zipfile failed (its message, else the exception's class)."""
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _unsafe(shown: str, info: zipfile.ZipInfo, why: str) -> UploadRejected:
    return UploadRejected(
        f"the zip {shown} member {_shown(info.orig_filename)} {why}, which is not allowed; "
        "re-create the zip with plain relative paths (a folder of images) and upload it again"
    )


def _too_large(shown: str, info: zipfile.ZipInfo, limits: Limits) -> UploadRejected:
    return UploadRejected(
        f"the zip {shown} member {_shown(info.orig_filename)} is larger than the "
        f"{_size(limits.max_image_bytes)} limit per image; remove or shrink it and upload again"
    )


def _too_much(shown: str, total: int, limits: Limits) -> UploadRejected:
    return UploadRejected(
        f"the zip {shown} unpacks to more than the {_size(limits.max_total_uncompressed)} allowed "
        f"(at least {_size(total)}); split it into smaller zips and upload them one by one"
    )


def _bomb(shown: str, what: str, ratio: float, limits: Limits) -> UploadRejected:
    scope = "overall" if what == "overall" else f"for member {what}"
    return UploadRejected(
        f"the zip {shown} compresses {ratio:.0f}:1 {scope}, above the {limits.max_ratio:g}:1 allowed "
        "(a possible zip bomb); zip the images without padding or upload them unzipped"
    )
