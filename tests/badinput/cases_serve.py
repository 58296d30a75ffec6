"""Hostile-input cases of the second probe: serve (see docs/robustness.md, "Second probe: serve")."""

from __future__ import annotations
