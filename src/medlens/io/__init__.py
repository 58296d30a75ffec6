"""Readers and writers: raster images, DICOM, NIfTI, npz."""

from medlens.io.images import read_image

__all__ = ["read_image"]
