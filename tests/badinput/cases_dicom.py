"""Hostile-input cases of the second probe: dicom (see docs/robustness.md, "Second probe: dicom")."""

from __future__ import annotations
