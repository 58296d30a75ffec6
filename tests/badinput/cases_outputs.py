"""Hostile-input cases of the second probe: outputs (see docs/robustness.md, "Second probe: outputs")."""

from __future__ import annotations
