"""Hostile-input cases of the second probe: training (see docs/robustness.md, "Second probe: training")."""

from __future__ import annotations
