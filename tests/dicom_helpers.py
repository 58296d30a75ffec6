"""A generated DICOM series (one slice per position) for reader and CLI tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# -- generated DICOM series -----------------------------------------------------------------------------
ROWS, COLS = 4, 6


def write_series(folder: Path, positions, iops=None, uid=None, slope=2.0, intercept=-10.0) -> str:
    """Write one slice per z position (in reverse order, shuffled names) and return the series UID."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or generate_uid()
    for k in reversed(range(len(positions))):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesDescription = "MR", uid, "test series"
        ds.InstanceNumber = len(positions) - k  # deliberately the reverse of the spatial order
        ds.ImagePositionPatient = [-10.0, 20.0, float(positions[k])]
        ds.ImageOrientationPatient = list(iops[k]) if iops else [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.5, 0.8]  # row spacing (y), column spacing (x)
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        r, c = np.mgrid[:ROWS, :COLS]
        ds.PixelData = (k * 1000 + r * 10 + c).astype(np.uint16).tobytes()
        ds.save_as(folder / f"img{(k * 5) % 7}-{k}", enforce_file_format=True)  # names out of order
    return uid
