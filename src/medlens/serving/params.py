"""The fields a job on a run may carry, checked before the job is queued.

``POST /api/runs/{id}/jobs`` hands its JSON to the library in a worker process, so nothing in it is trusted:
every kind has a schema (:data:`SCHEMAS`; unknown fields, wrong types and values out of range are refused
naming the field), and every field that names a file or folder must lie inside a folder the operator allowed
(``--allow-path``) or an uploaded dataset. Otherwise a caller could evaluate any folder on the server and
read its predictions back, or make a job's error quote any file's first line.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medlens.errors import MedlensError

MAX_ID = 2**31 - 1
SPLIT = r"^[A-Za-z0-9_-]{1,40}$"
PathText = Field(default=None, min_length=1, max_length=4096)


class Refused(MedlensError):
    """A request the service refuses, with the HTTP status it answers (400, 403, 404, 422)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


class EvaluateFields(_Fields):
    """``evaluate``: the run on its own test split, or on ``dataset`` (an id) or ``data`` (a path)."""

    dataset: int | None = Field(default=None, ge=1, le=MAX_ID)
    data: str | None = PathText
    split: str | None = Field(default=None, pattern=SPLIT)
    n_bootstrap: int | None = Field(default=None, ge=0, le=10_000)
    positive: str | None = Field(default=None, min_length=1, max_length=200)
    threshold: float | None = Field(default=None, ge=0, le=1)
    cohorts: str | None = Field(default=None, min_length=1, max_length=500)
    metadata: str | None = PathText
    min_cell: int | None = Field(default=None, ge=1, le=1_000_000)
    reference: str | None = Field(default=None, min_length=1, max_length=200)
    readers: str | None = PathText
    patient_agg: Literal["max", "mean"] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EvaluateFields:
        if self.dataset is not None and self.data is not None:
            raise ValueError("give 'dataset' (an id) or 'data' (a path), not both")
        return self


class CalibrateFields(_Fields):
    """``calibrate``: fit the temperature on ``split`` (default val), or ``reset`` it."""

    split: str | None = Field(default=None, pattern=SPLIT)
    reset: bool | None = None


class TriageFields(_Fields):
    """``triage``: rank the studies of ``dataset`` (an id, required) into a worklist."""

    dataset: int = Field(ge=1, le=MAX_ID)
    history: str | None = PathText
    config: str | None = PathText
    urgent: list[str] | None = Field(default=None, min_length=1, max_length=100)
    split: str | None = Field(default=None, pattern=SPLIT)
    now: str | None = Field(default=None, min_length=1, max_length=40)
    explain: bool | None = None
    evaluate: bool | None = None
    read_every: float | None = Field(default=None, gt=0, le=24 * 60)
    arrive_every: float | None = Field(default=None, ge=0, le=24 * 60)
    n_bootstrap: int | None = Field(default=None, ge=0, le=10_000)

    @field_validator("urgent")
    @classmethod
    def _names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not all(0 < len(v.strip()) <= 200 for v in value):
            raise ValueError("each urgent class is a class name of 1-200 characters")
        return value

    @field_validator("now")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        from medlens.triaging.history import parse_time

        if value is not None:
            try:
                parse_time(value, what="now")
            except MedlensError as err:
                raise ValueError(str(err)) from None
        return value


SCHEMAS: dict[str, type[_Fields]] = {
    "evaluate": EvaluateFields,
    "calibrate": CalibrateFields,
    "triage": TriageFields,
}
#: the fields of each kind that name a file ("file") or a source to read cases from ("source")
PATH_FIELDS: dict[str, dict[str, str]] = {
    "evaluate": {"data": "source", "metadata": "file", "readers": "file"},
    "calibrate": {},
    "triage": {"history": "file", "config": "file"},
}


def check_fields(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The job's fields after its kind's schema, without the ones left out.

    Raises:
        Refused: an unknown kind (400), or a field the schema refuses (422, naming the field).
    """
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise Refused(f"job kind must be one of {', '.join(SCHEMAS)}; got {kind!r}")
    try:
        checked = schema.model_validate(params)
    except ValidationError as err:
        raise Refused(_first_error(kind, schema, err), status=422) from None
    return checked.model_dump(exclude_none=True)


def _first_error(kind: str, schema: type[_Fields], err: ValidationError) -> str:
    first = err.errors()[0]
    field = ".".join(str(x) for x in first.get("loc", ())) or "the job"
    allowed = ", ".join(sorted(schema.model_fields))
    if first.get("type") == "extra_forbidden":
        return f"job field {field!r} is not an option of {kind}; its fields are: {allowed}"
    if first.get("type") == "missing":
        return f"job field {field!r} is required for {kind}"
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if field == "the job":
        return f"{kind} job: {message}"
    value = first.get("input")
    short = isinstance(value, (int, float, str, bool)) and len(repr(value)) < 80
    shown = f" (got {value!r})" if short and "got " not in message else ""
    return f"job field {field!r}: {message}{shown}"


def user_path(value: str, label: str) -> Path:
    """A path a caller sent, resolved (``~`` expanded, links followed), or one line naming ``label``.

    Raises:
        Refused: (400) a NUL or control character, an unknown ``~user``, or a path the system cannot resolve.
    """
    text = str(value)
    if not text or any(ord(ch) < 32 for ch in text):
        raise Refused(f"{label}: the path is empty or holds a control character; give a plain path")
    try:
        return Path(text).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as err:  # ~nosuchuser, a loop of links, a name too long
        raise Refused(f"{label}: {text[:200]} cannot be resolved ({err}); give a plain path") from None


def path_exists(path: Path) -> bool:
    """Whether ``path`` exists; False, not an error, for a name the system refuses (too long, ...)."""
    try:
        return path.exists()
    except OSError:
        return False


def allowed_path(value: str, field: str, roots: Iterable[Path], kind: str = "file") -> Path:
    """``value`` resolved (links followed) when it lies inside one of ``roots`` and exists.

    Args:
        value: the path a caller sent.
        field: its field name, for the message.
        roots: the folders the caller may name (the ``--allow-path`` folders and the uploaded datasets).
        kind: ``"file"`` (a CSV or YAML the job reads) or ``"source"`` (a folder or a file of cases).

    Raises:
        Refused: 403 outside every root (said before anything about the path's existence, so a caller
            learns nothing about the rest of the server), 404 when it does not exist, 400 when a file is a
            folder.
    """
    target = user_path(value, f"job field {field!r}")
    value = value if len(value) <= 200 else value[:200] + "..."  # (quoted back: kept short)
    if not any(target.is_relative_to(Path(root).resolve()) for root in roots):
        raise Refused(
            f"job field {field!r}: {value} is not inside a folder the server allows; name a file under a "
            "folder given to medlens serve --allow-path, or upload it in a dataset",
            status=403,
        )
    if not path_exists(target):
        raise Refused(f"job field {field!r}: {value} does not exist", status=404)
    if kind == "file" and not target.is_file():
        raise Refused(f"job field {field!r}: {value} is a folder; name a file")
    return target


Side = Annotated[int, Field(ge=8, le=512)]  # a 3D patch side in voxels
Millimetres = Annotated[float, Field(ge=0.1, le=50)]  # a voxel size


class TrainFields(_Fields):
    """The training options a caller may set (TrainConfig fields; paths and hardware stay server-side),
    with the ranges a shared server accepts."""

    task: str | None = Field(default=None, min_length=1, max_length=40)
    model: str | None = Field(default=None, min_length=1, max_length=80)
    epochs: int | None = Field(default=None, ge=1, le=10_000)
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    lr: float | None = Field(default=None, gt=0, lt=10)
    image_size: int | None = Field(default=None, ge=8, le=1024)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    val_fraction: float | None = Field(default=None, gt=0, lt=1)
    augment: bool | None = None
    patience: int | None = Field(default=None, ge=1, le=10_000)
    max_minutes: float | None = Field(default=None, gt=0, le=60 * 24 * 30)
    optimizer: str | None = Field(default=None, min_length=1, max_length=40)
    weight_decay: float | None = Field(default=None, ge=0, le=1)
    label_smoothing: float | None = Field(default=None, ge=0, lt=1)
    dropout: float | None = Field(default=None, ge=0, lt=1)
    head: str | None = Field(default=None, min_length=1, max_length=40)
    freeze_backbone: bool | None = None
    channels: Literal[1, 3] | None = None
    boxes_from_masks: bool | None = None
    patch_size: list[Annotated[int, Field(ge=8, le=512)]] | None = Field(
        default=None, min_length=3, max_length=3
    )
    spacing: list[Annotated[float, Field(ge=0.1, le=50)]] | None = Field(
        default=None, min_length=3, max_length=3
    )


def check_training(options: dict[str, Any]):
    """The training options checked as the training itself would check them, before anything is queued.

    Returns:
        ``(options, config)``: the options without the ones left out, and the TrainConfig they make.

    Raises:
        Refused: (400) an unknown option, a value of the wrong type or out of range, or a model that does
            not exist or does not serve the task, naming the option.
    """
    from medlens.models.registry import get_model_info
    from medlens.tasks.registry import get_task
    from medlens.training.config import TrainConfig

    try:
        options = TrainFields.model_validate(options).model_dump(exclude_none=True)
    except ValidationError as err:
        first = err.errors()[0]
        if first.get("type") == "extra_forbidden":
            unknown = sorted(set(options) - set(TrainFields.model_fields))
            allowed = ", ".join(sorted(TrainFields.model_fields))
            raise Refused(f"unknown training option(s) {', '.join(unknown)}; allowed: {allowed}") from None
        raise Refused(
            _first_error("training", TrainFields, err).replace("job field", "training option")
        ) from None
    config = TrainConfig(**options)  # the library's own checks (choices, combinations)
    info = get_model_info(config.model)
    if not get_task(config.task).accepts_model(info):
        raise Refused(
            f"training option 'model': {config.model!r} is a {info.task} model and cannot be trained for "
            f"{config.task}; pick one from `medlens models` with task {config.task}"
        )
    return options, config
