"""Dataset commands: ``ingest``, ``audit`` and the ``convert`` group."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from medlens.cli.app import MAX_MB, QUIET, SRC_HELP, _console, app
from medlens.utils.files import check_output_path


@app.command()
def ingest(
    src: Path = typer.Argument(..., help=SRC_HELP),
    output: Path = typer.Option(..., "-o", "--output", help="Manifest CSV to write."),
    label_names: str | None = typer.Option(
        None, help="Comma-separated class names for integer labels (npz), in label order."
    ),
) -> None:
    """Scan SRC and write a manifest CSV (one row per image: case_id, patient_id, split, image, label)."""
    from medlens.data.ingest import ingest as do_ingest

    check_output_path(output, sources=[src], kind="file", what="manifest CSV", marker="manifest")
    names = [n.strip() for n in label_names.split(",")] if label_names else None
    manifest = do_ingest(src, label_names=names)
    manifest.save(output)
    counts = manifest.df.groupby(["split", "label"]).size() if manifest.has_labels else len(manifest)
    _console().print(f"[green]wrote[/] {output}: {len(manifest)} images, classes {manifest.classes}")
    _console().print(counts)
    if "left out" in manifest.source:  # images outside class folders, DICOM files that hold no image
        _console().print(f"source: {manifest.source}", markup=False, soft_wrap=True)


@app.command()
def audit(
    src: Path = typer.Argument(..., help=SRC_HELP),
    output: Path = typer.Option(
        Path("audit"), "-o", "--output", help="Folder for audit.json and audit.html."
    ),
    fix: Path | None = typer.Option(
        None,
        help="Write a cleaned manifest CSV here (drops unreadable files, "
        "keeps one of each exact duplicate, moves leaked groups into "
        "one split, drops label conflicts).",
    ),
    prefer: str = typer.Option("train", help="Split that leaked duplicate groups move to: train or test."),
    threshold: int | None = typer.Option(
        None, help="Near-duplicate perceptual-hash Hamming threshold (default 6 of 64 bits)."
    ),
    workers: int = typer.Option(2, help="Decoding threads."),
    mask_classes: int | None = typer.Option(
        None,
        help="Label values segmentation masks may hold: 2 "
        "for binary {0,1}/{0,255}, K for 0..K-1 (default: "
        "an MSD dataset.json's labels, else 2).",
    ),
    strict: bool = typer.Option(False, help="Exit with code 1 when anything is found."),
    max_image_mb: float | None = MAX_MB,
    quiet: bool = QUIET,
) -> None:
    """Find unreadable files, size outliers, imbalance, exact/near duplicates, train/test leakage, clusters.

    Segmentation sources are audited too: 2D image/mask pairs and NIfTI volumes (imagesTr/labelsTr folders,
    an MSD dataset.json). Volumes add a voxel-spacing and depth census with its outliers; every mask is
    checked against its image (same size, expected values) and its foreground fraction reported.
    """
    from medlens.auditing.run import audit as do_audit
    from medlens.auditing.run import print_summary

    check_output_path(output, sources=[src], what="audit folder", marker="audit")
    if fix is not None:
        check_output_path(
            fix, sources=[src], kind="file", option="--fix", what="cleaned manifest CSV", marker="manifest"
        )
    result = do_audit(
        src,
        output,
        near_threshold=threshold,
        fix=fix,
        prefer=prefer,
        workers=workers,
        progress=not quiet,
        mask_classes=mask_classes,
        max_image_mb=max_image_mb,
    )
    print_summary(result, _console())
    _console().print(f"report: {output / 'audit.html'}")
    if strict and result.findings_count:
        raise typer.Exit(1)


convert_app = typer.Typer(no_args_is_help=True, help="Convert datasets between layouts.")
app.add_typer(convert_app, name="convert")


@convert_app.command("slices-to-volumes")
def slices_to_volumes(
    src: Path = typer.Argument(..., help="kaggle_3m tree: <patient>/<patient>_<n>.tif + _mask.tif."),
    output: Path = typer.Argument(..., help="Folder for imagesTr/, labelsTr/ and manifest.csv."),
    overwrite: bool = typer.Option(
        False, help="Replace an existing output folder (only one medlens wrote; never the source)."
    ),
    max_image_mb: float | None = MAX_MB,
    quiet: bool = QUIET,
) -> None:
    """Stack each patient's slices (in slice order) into NIfTI image and mask volumes."""
    from medlens.data.convert import slices_to_volumes as convert

    manifest = convert(src, output, progress=not quiet, overwrite=overwrite, max_image_mb=max_image_mb)
    report = json.loads((output / "convert.json").read_text(encoding="utf-8"))
    for skipped in report.get("skipped", []):  # a patient missing a slice: named, never stacked over
        _console(stderr=True).print(
            f"skipped patient {Path(skipped['path']).name}: {skipped['reason']}",
            style="yellow",
            highlight=False,
            markup=False,
        )
    _console().print(f"[green]wrote[/] {len(manifest)} volumes to {output}")


@convert_app.command("masks-to-labels")
def masks_to_labels(
    src: Path = typer.Argument(..., help="Image/mask pairs (kaggle_3m folders or a CSV image,mask)."),
    output: Path = typer.Argument(..., help="CSV to write: image,label,patient_id,..."),
    positive: str = typer.Option("tumour", help="Label of images whose mask has foreground."),
    negative: str = typer.Option("notumor", help="Label of images whose mask is empty."),
) -> None:
    """Label each image by whether its mask is empty, to train the classifier gate of a two-stage pipeline."""
    from medlens.data.convert import masks_to_labels as convert

    check_output_path(
        output, sources=[src], kind="file", option="OUTPUT", what="labelled CSV", marker="manifest"
    )
    manifest = convert(src, output, positive=positive, negative=negative)
    counts = manifest.df["label"].value_counts().to_dict()
    _console().print(f"[green]wrote[/] {output}: {len(manifest)} images {counts}")
