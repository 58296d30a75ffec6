"""Steps composed for the user: the demo on the sample shipped inside the package (`medlens demo`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from medlens.pipeline.steps import train

SAMPLE = "sample/brain-mri"


def sample_path() -> Path:
    """Folder of the embedded sample (train/ and test/ splits, 4 classes)."""
    return Path(str(resources.files("medlens") / SAMPLE))


def run_demo(output: str | Path = "medlens-demo", *, progress: bool = True) -> Path:
    """Ingest the sample, train cnn-small (about a minute on 2 CPU cores), evaluate on its held-out test
    split."""
    run = Path(output) / "run"
    return train(
        sample_path(),
        run,
        overwrite=True,
        progress=progress,
        model="cnn-small",
        epochs=30,
        image_size=96,
        batch_size=32,
        patience=30,
    )
