"""Hostile-input cases of the second probe: triage (see docs/robustness.md, "Second probe: triage")."""

from __future__ import annotations
