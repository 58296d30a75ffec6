"""Hostile-input cases of the second probe: runfiles (see docs/robustness.md, "Second probe: runfiles")."""

from __future__ import annotations
