"""Typed training configuration: YAML file + CLI overrides; unknown keys are errors; saved resolved in the
run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from medlens.errors import MedlensError, did_you_mean
from medlens.io.guard import first_line
from medlens.models.registry import get_model_info
from medlens.tasks.registry import get_task, list_tasks

OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("onecycle", "cosine", "none")
HEADS = ("linear", "mlp")
PRECISIONS = ("auto", "32", "bf16-mixed", "16-mixed")
#: Lightning's other spellings of the same precisions, accepted and stored as the name on the left of
#: PRECISIONS. 64 and the "-true" half precisions are not offered: the models and the exported weights are
#: fp32.
PRECISION_ALIASES = {"32-true": "32", "bf16": "bf16-mixed", "16": "16-mixed"}
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
#: The largest 3D patch side: 1024³ float32 voxels are already 4 GiB per patch.
MAX_PATCH = 1024
#: The built-in tasks; ``--task`` takes any registered one (medlens.tasks.registry.list_tasks).
TASKS = ("classification", "segmentation", "detection")
#: The metric early stopping and the best checkpoint follow when ``monitor`` is left at its default.
#: (Each task names its own: ``Task.monitor``, e.g. val_dice for segmentation.)
DEFAULT_MONITOR = "val_accuracy"
#: What ``--no-plan`` (or a field the plan leaves open) falls back to.
FIXED_EPOCHS, FIXED_BATCH = 16, 32


def _cli(help: str, **cli: Any) -> dict[str, Any]:
    """A field's metadata: its command-line help. ``cli`` may hold ``option`` (the option's names, default
    ``--field-name``; ``--name/--no-name`` for a bool), ``metavar``, ``panel`` (the group ``--help`` lists it
    in), or ``cli=False`` for a config-only key. ``medlens train`` builds its options from these (see
    ``medlens.cli``)."""
    return {"help": help, **cli}


@dataclass
class TrainConfig:
    """Everything that decides a training run. ``None`` means "the model's default"."""

    model: str | None = field(
        default=None,
        metadata=_cli(
            "Model name (see `medlens models`; default: the task's, cnn-small for classification, unet for "
            "segmentation, boxnet for detection).",
            option=("--model", "-m"),
        ),
    )
    task: str = field(default="classification", metadata=_cli("classification, segmentation or detection."))
    plan: bool = field(
        default=True,
        metadata=_cli(
            "Fit input size, channels, batch, epochs, augmentation and validation scheme (3D: patch size) to "
            "the dataset's fingerprint, never to this machine's speed (written to plans.json with a reason "
            "per choice); an option given explicitly always wins. --no-plan keeps fixed defaults (the "
            f"model's size, batch {FIXED_BATCH}, {FIXED_EPOCHS} epochs).",
            panel="Plan",
        ),
    )
    epochs: int | None = field(
        default=None,
        metadata=_cli(
            "Epochs (default: the plan's, from the dataset's size and image size; with --budget, the most "
            "that may run).",
            panel="Training",
        ),
    )
    batch_size: int | None = field(
        default=None, metadata=_cli("Batch size (default: the plan's, usually 32).", panel="Training")
    )
    lr: float | None = field(
        default=None,
        metadata=_cli("Peak learning rate (default: 3e-3 with adamw, 5e-2 with sgd).", panel="Training"),
    )
    weight_decay: float = field(default=0.05, metadata=_cli("Weight decay.", panel="Training"))
    momentum: float = field(default=0.9, metadata=_cli("SGD momentum.", panel="Training"))
    optimizer: str = field(default="adamw", metadata=_cli("adamw or sgd.", panel="Training"))
    scheduler: str = field(default="onecycle", metadata=_cli("onecycle, cosine or none.", panel="Training"))
    image_size: int | None = field(
        default=None, metadata=_cli("Input side in pixels (default: the model's).", panel="Model")
    )
    channels: int | None = field(
        default=None, metadata=_cli("1 or 3 input channels (default: the model's).", panel="Model")
    )
    fraction: float = field(
        default=1.0, metadata=_cli("Train on a stratified fraction (0,1] of train.", panel="Data")
    )
    val_fraction: float | None = field(
        default=None,
        metadata=_cli("Validation share carved when SRC has no val split (default: 0.2).", panel="Data"),
    )
    class_weights: str = field(
        default="none",
        metadata=_cli(
            "'auto' weights the loss by inverse class frequency; 'none' does not.", panel="Training"
        ),
    )
    label_smoothing: float = field(
        default=0.05,
        metadata=_cli(
            "Classification: label smoothing of the cross-entropy loss (0: none).", panel="Training"
        ),
    )
    augment: bool = field(
        default=True, metadata=_cli("Random flips, rotations, shifts, brightness.", panel="Training")
    )
    augment_strength: float | None = field(
        default=None,
        metadata=_cli(
            "Scale of the random transforms' ranges, 1 = standard (default: the plan's, by dataset size).",
            panel="Training",
        ),
    )
    mixup: float = field(
        default=0.0,
        metadata=_cli(
            "Classification: mixup with this Beta(alpha, alpha) (0: off; e.g. 0.2).", panel="Training"
        ),
    )
    ema: bool = field(
        default=False,
        metadata=_cli(
            "Validate, checkpoint and export an exponential moving average of the weights (from a quarter "
            "of the steps on, time constant an eighth of them).",
            panel="Training",
        ),
    )
    progressive: bool = field(
        default=False,
        metadata=_cli(
            "Classification: progressive resizing, the first half of the epochs at 3/4 of the input size.",
            panel="Training",
        ),
    )
    compile: bool = field(
        default=False,
        metadata=_cli("Compile the network with torch.compile for training.", panel="Hardware (Lightning)"),
    )
    final: bool | None = field(
        default=None,
        metadata=_cli(
            "After training with validation, refit on train + val for the epoch count chosen on val; the "
            "refit model is the run's model (default: the plan's, on for small datasets). Its metrics on "
            "val are never reported: the run reports the selection model's val metrics and the final "
            "model's test metrics when SRC has a test split.",
            panel="Plan",
        ),
    )
    freeze_backbone: bool = field(default=False, metadata=_cli("Train only the head.", panel="Model"))
    head: str = field(
        default="linear",
        metadata=_cli("Head: linear, or mlp (linear, ReLU, dropout, linear).", panel="Model"),
    )
    dropout: float = field(default=0.0, metadata=_cli("Dropout in the head.", panel="Model"))
    weights: str | None = field(
        default=None, metadata=_cli("State-dict file to initialise the backbone.", panel="Model")
    )
    pretrained: bool | None = field(
        default=None,
        metadata=_cli(
            "Start from the weights that ship with the model (default: yes where `medlens models` says so).",
            panel="Model",
        ),
    )
    patience: int | None = field(
        default=None,
        metadata=_cli(
            "Early-stopping patience in epochs (default: none under the one-cycle schedule, which ends on "
            "its own with the learning rate annealed; 8 with the others).",
            panel="Training",
        ),
    )
    monitor: str = field(
        default="val_accuracy",
        metadata=_cli(
            "Validation metric for early stopping and the best checkpoint (val_accuracy means the "
            "task's own: val_dice for segmentation, val_iou for detection).",
            panel="Training",
        ),
    )
    max_minutes: float | None = field(
        default=None,
        metadata=_cli("Stop training after this many minutes (default: no limit).", panel="Training"),
    )
    budget: str | None = field(
        default=None,
        metadata=_cli(
            "Wall-clock training budget, e.g. 5m, 90s, 1h: a short throughput probe on this machine fits "
            "the number of epochs (at most --epochs) so that the one-cycle schedule ends with the budget. "
            "The only option that lets this machine's speed decide the epochs (default: none).",
            panel="Training",
        ),
    )
    seed: int = field(default=0, metadata=_cli("Random seed; runs are deterministic.", panel="Training"))
    workers: int = field(default=2, metadata=_cli("Threads that decode and cache the images.", panel="Data"))
    accelerator: str = field(
        default="auto", metadata=_cli("cpu, gpu, cuda, mps, tpu or auto.", panel="Hardware (Lightning)")
    )
    devices: int = field(
        default=1, metadata=_cli("Devices (processes) per node for Lightning.", panel="Hardware (Lightning)")
    )
    num_nodes: int = field(
        default=1, metadata=_cli("Nodes for multi-node DDP.", panel="Hardware (Lightning)")
    )
    strategy: str = field(
        default="auto", metadata=_cli("Lightning strategy, e.g. ddp.", panel="Hardware (Lightning)")
    )
    precision: str = field(
        default="auto",
        metadata=_cli(
            "32, bf16-mixed, 16-mixed or auto (bf16 mixed where the CPU/GPU does bf16 natively, else 32).",
            panel="Hardware (Lightning)",
        ),
    )
    audit_fix: bool = field(
        default=False, metadata=_cli("Audit SRC first and train on the cleaned manifest.", panel="Data")
    )
    boxes_from_masks: bool = field(
        default=False,
        metadata=_cli("Detection: the box of each mask's largest component is the target.", panel="Data"),
    )
    model_args: dict[str, Any] | None = field(
        default=None,
        metadata=_cli(
            "Network option KEY=VALUE, repeatable, e.g. channels=16,32,64 for unet.",
            option="--model-arg",
            metavar="<k=v>",
            panel="Model",
        ),
    )
    spatial_dims: int | None = field(
        default=None, metadata=_cli("2 or 3 (default: 3 for NIfTI volumes).", panel="3D volumes")
    )
    patch_size: list[int] | None = field(
        default=None,
        metadata=_cli(
            "3D patch X,Y,Z in voxels (default: up to 96,96,32).", metavar="X,Y,Z", panel="3D volumes"
        ),
    )
    spacing: list[float] | None = field(
        default=None,
        metadata=_cli(
            "3D: resample volumes to this voxel size X,Y,Z mm.", metavar="X,Y,Z", panel="3D volumes"
        ),
    )
    samples_per_volume: int = field(
        default=4, metadata=_cli("3D: random patches per volume and epoch.", panel="3D volumes")
    )
    intensity: str | None = field(
        default=None,
        metadata=_cli(
            "dataset (mean/std of the training set; classification default), image (each image standardised; "
            "2D segmentation and detection default) or volume (3D).",
            panel="Data",
        ),
    )
    max_image_mb: float = field(
        default=512.0,
        metadata=_cli(
            "Refuse (and skip, inside a dataset) any file whose header declares more than this many MiB once "
            "decoded, checked before decoding.",
            panel="Data",
        ),
    )
    intended_use: str | None = field(
        default=None,
        metadata=_cli(
            "What the model is for, in a sentence (who, which images, which decision); "
            "written into the model card.",
            panel="Model card",
        ),
    )

    def __post_init__(self) -> None:
        if isinstance(self.precision, int) and not isinstance(self.precision, bool):
            self.precision = str(self.precision)  # YAML reads `precision: 32` as a number
        _check_types(self)
        self.precision = PRECISION_ALIASES.get(self.precision, self.precision)
        if self.model is None and self.task in list_tasks():
            self.model = get_task(self.task).default_model
        self.validate()

    def validate(self) -> None:
        self._validate_lightning()
        if not self.max_image_mb > 0:
            raise MedlensError(f"--max-image-mb must be a positive number of MiB, got {self.max_image_mb}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("head", self.head, HEADS)
        _choice("class_weights", self.class_weights, ("none", "auto"))
        _choice("task", self.task, list_tasks())
        self._validate_localisation()
        if not 0 < self.fraction <= 1:
            raise MedlensError(f"--fraction must be in (0, 1], got {self.fraction}")
        if self.val_fraction is not None and not 0 < self.val_fraction < 1:
            raise MedlensError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if self.image_size is not None and not 8 <= self.image_size <= 1024:
            raise MedlensError(f"--image-size must be between 8 and 1024 pixels, got {self.image_size}")
        if self.budget is not None:
            parse_duration(self.budget, "--budget")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise MedlensError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.augment_strength is not None and not 0 <= self.augment_strength <= 3:
            raise MedlensError(f"--augment-strength must be between 0 and 3, got {self.augment_strength}")
        if not 0 <= self.mixup <= 10:
            raise MedlensError(f"--mixup must be an alpha between 0 (off) and 10, got {self.mixup}")
        if self.final and (self.devices > 1 or self.num_nodes > 1):
            raise MedlensError(
                "--final (selection fit, then a refit) runs in one process; drop --final, or --devices and "
                "--num-nodes"
            )
        if (self.mixup or self.progressive) and self.task != "classification":
            raise MedlensError(
                f"--mixup and --progressive apply to classification; leave them off for {self.task}"
            )
        if self.lr is not None and not 0 < self.lr < 10:
            raise MedlensError(f"--lr must be positive and below 10, got {self.lr}")
        if not 0 <= self.dropout < 1:
            raise MedlensError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.channels not in (None, 1, 3):
            raise MedlensError(f"--channels must be 1 or 3, got {self.channels}")

    def _validate_lightning(self) -> None:
        """The Trainer options, checked without hardware (see :func:`check_devices` for that)."""
        if self.precision not in PRECISIONS:
            aliases = ", ".join(PRECISION_ALIASES)
            raise MedlensError(
                f"--precision must be one of {', '.join(PRECISIONS)} (also {aliases}), got "
                f"{self.precision!r}.{did_you_mean(str(self.precision), list(PRECISIONS))}"
            )
        if self.accelerator not in ACCELERATORS:
            raise MedlensError(
                f"--accelerator must be one of {', '.join(ACCELERATORS)}, got {self.accelerator!r}."
                f"{did_you_mean(self.accelerator, list(ACCELERATORS))}"
            )
        if self.devices < 1:
            raise MedlensError(f"--devices must be at least 1 (devices per node), got {self.devices}")
        if self.num_nodes < 1:
            raise MedlensError(f"--num-nodes must be at least 1, got {self.num_nodes}")
        if self.strategy != "auto":
            valid = strategies()
            if self.strategy not in valid:
                raise MedlensError(
                    f"--strategy must be one of {', '.join(valid)}, got {self.strategy!r}."
                    f"{did_you_mean(self.strategy, valid)}"
                )

    def _validate_localisation(self) -> None:
        """Options of the segmentation and detection tasks."""
        if self.boxes_from_masks:  # the task says whether it takes the option
            get_task(self.task).check_config(self)
        if self.spatial_dims not in (None, 2, 3):
            raise MedlensError(f"--spatial-dims must be 2 or 3, got {self.spatial_dims}")
        if self.model_args is not None and not isinstance(self.model_args, dict):
            raise MedlensError(f"model_args must be a mapping of option: value, got {self.model_args!r}")
        if self.patch_size is not None and (
            len(self.patch_size) != 3 or not 8 <= min(self.patch_size) <= max(self.patch_size) <= MAX_PATCH
        ):
            raise MedlensError(  # the sides the data allows are checked once the volumes are read
                f"--patch-size needs 3 sides of 8 to {MAX_PATCH} voxels (X,Y,Z), got "
                f"{','.join(map(str, self.patch_size))}"
            )
        if self.spacing is not None and (len(self.spacing) != 3 or min(self.spacing) <= 0):
            raise MedlensError(f"--spacing needs 3 positive voxel sizes in mm (X,Y,Z), got {self.spacing}")
        if self.intensity is not None:
            _choice("intensity", self.intensity, ("dataset", "image", "volume"))
        if self.samples_per_volume < 1:
            raise MedlensError(f"--samples-per-volume must be at least 1, got {self.samples_per_volume}")

    @property
    def resolved_monitor(self) -> str:
        """``monitor``, with the task's own validation metric when the classification default was left."""
        if self.monitor == DEFAULT_MONITOR:
            return get_task(self.task).monitor
        return self.monitor

    @property
    def resolved_patience(self) -> int | None:
        """``patience``, or its default: no early stopping under one-cycle (stopping it half-way leaves the
        model at a high learning rate), 8 epochs otherwise."""
        if self.patience is not None:
            return self.patience
        return None if self.scheduler == "onecycle" else 8

    @property
    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 0.05 if self.optimizer == "sgd" else 3e-3

    def resolved_precision(self) -> str:
        """The precision Lightning runs at; "auto" is bf16 mixed precision where the hardware does bf16
        natively (1.7x faster on AVX512-BF16 CPUs, standard on recent GPUs), else full fp32. Weights and the
        exported model stay fp32."""
        if self.precision != "auto":
            return self.precision
        import torch

        if self.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
            return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        return "bf16-mixed" if _cpu_has_native_bf16() else "32"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = [f.name for f in fields(cls)]
        unknown = [k for k in d if k not in names]
        if unknown:
            k = unknown[0]
            raise MedlensError(
                f"unknown config key {k!r}.{did_you_mean(k, names)} Valid keys: {', '.join(names)}"
            )
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a YAML config (plain data only, never code) and apply non-None ``overrides``."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
            raise MedlensError(
                f"cannot read config {path}: {first_line(err)}; it must be a "
                "UTF-8 YAML file of key: value lines"
            ) from err
        if not isinstance(data, dict):
            raise MedlensError(f"config {path} must be a mapping of key: value")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> TrainConfig:
        task = changes.get("task", self.task)
        if (
            task != self.task
            and "model" not in changes
            and self.task in list_tasks()
            and self.model == get_task(self.task).default_model
        ):
            changes["model"] = None  # the old task's default model follows the task
        return dataclasses.replace(self, **changes)


def strategies() -> list[str]:
    """ "auto" and the names in Lightning's strategy registry (ddp, ddp_spawn, fsdp, deepspeed, ...)."""
    from lightning.pytorch.strategies import StrategyRegistry

    return ["auto", *sorted(StrategyRegistry.keys())]


def check_model(name: str, task: str):
    """The registry entry of model ``name`` if it can be trained for ``task``.

    Raises:
        MedlensError: an unknown model (with a did-you-mean hint), or one of another task.
    """
    info = get_model_info(name)
    if not get_task(task).accepts_model(info):
        raise MedlensError(
            f"model {name!r} is a {info.task} model and cannot be trained for {task}; "
            f"pick one from `medlens models` with task {task}"
        )
    return info


def check_devices(cfg: TrainConfig) -> None:
    """Stop with one line when the Lightning options ask for hardware or packages this machine lacks.

    Called at the start of ``train()``, before any folder is created or data read.
    """
    import torch

    acc, n_gpu = cfg.accelerator, torch.cuda.device_count() if torch.cuda.is_available() else 0
    if acc in ("gpu", "cuda") and n_gpu == 0:
        raise MedlensError(
            f"--accelerator {acc}: no GPU is visible to torch on this machine; use --accelerator cpu or auto"
        )
    if acc in ("gpu", "cuda", "auto") and n_gpu and cfg.devices > n_gpu:
        raise MedlensError(
            f"--devices {cfg.devices}: only {n_gpu} GPU(s) visible to torch on this machine; "
            f"use --devices {n_gpu} or fewer"
        )
    if acc == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise MedlensError(
            "--accelerator mps: no Apple MPS device is visible to torch on this machine; "
            "use --accelerator cpu or auto"
        )
    strategy = cfg.strategy
    if acc == "tpu" or strategy in ("xla", "xla_debug", "single_xla", "single_tpu"):
        from lightning.pytorch.accelerators import XLAAccelerator

        if not XLAAccelerator.is_available():
            option = f"--accelerator {acc}" if acc == "tpu" else f"--strategy {strategy}"
            raise MedlensError(
                f"{option}: no TPU is visible to torch on this machine; use --accelerator cpu "
                "or auto (and --strategy auto)"
            )
    if strategy.startswith("deepspeed"):
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise MedlensError(
                f"--strategy {strategy} needs the deepspeed package, which is not installed; "
                "use --strategy ddp or auto"
            )
    if strategy.startswith("fsdp") and (n_gpu == 0 or acc in ("cpu", "mps", "tpu")):
        raise MedlensError(
            f"--strategy {strategy} needs CUDA GPUs (none is in use on this machine); "
            "use --strategy ddp or auto"
        )


_TYPE_HINTS: dict[str, Any] = {}


def _check_types(cfg: TrainConfig) -> None:
    """Every field against its annotation: "config key epochs must be an integer, got 'one'"."""
    import math
    import types
    import typing

    if not _TYPE_HINTS:
        _TYPE_HINTS.update(typing.get_type_hints(type(cfg)))
    for f in fields(cfg):
        hint = _TYPE_HINTS[f.name]
        value = getattr(cfg, f.name)
        args = (
            typing.get_args(hint)
            if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
            else (hint,)
        )
        optional = type(None) in args
        kind = next(a for a in args if a is not type(None))
        if value is None and optional:
            continue
        if kind is float and isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                setattr(cfg, f.name, number)
                continue
        if not _is_type(value, kind):
            expected = _type_words(kind) + (" or null" if optional else "")
            raise MedlensError(f"config key {f.name} must be {expected}, got {value!r}")
        if kind is float:
            setattr(cfg, f.name, float(value))


def _is_type(value: Any, kind: Any) -> bool:
    import typing

    origin = typing.get_origin(kind) or kind
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is str:
        return isinstance(value, str)
    if origin is dict:
        return isinstance(value, dict)
    if origin is list:
        (item,) = typing.get_args(kind) or (Any,)
        return isinstance(value, (list, tuple)) and (item is Any or all(_is_type(v, item) for v in value))
    return True


def _type_words(kind: Any) -> str:
    import typing

    origin = typing.get_origin(kind) or kind
    if origin is list:
        (item,) = typing.get_args(kind) or (Any,)
        return {int: "a list of integers", float: "a list of numbers"}.get(item, "a list")
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "a mapping of option: value",
    }.get(origin, str(kind))


def _cpu_has_native_bf16() -> bool:
    """True when the CPU has AVX512-BF16 or AMX-BF16 (emulated bf16 elsewhere would be slower than fp32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise MedlensError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, got {value!r}")


def parse_duration(text: Any, option: str = "--budget") -> float:
    """ "5m" / "90s" / "1.5h" / "2" (minutes) → seconds; one clear line for anything else."""
    raw = str(text).strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (raw[:-1], raw[-1]) if raw and raw[-1] in units else (raw, "m")
    try:
        value = float(number) * units[unit]
    except ValueError:
        value = float("nan")
    if not value > 0 or value != value or value == float("inf"):
        raise MedlensError(f"{option} must be a duration like 90s, 5m or 1.5h, got {text!r}")
    return value
