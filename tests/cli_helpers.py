"""Run the medlens CLI in-process for tests."""

from __future__ import annotations

import sys

import pytest

from medlens.cli import main


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """``medlens ARGS...`` → (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["medlens", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    return (0 if exit_info.value.code is None else exit_info.value.code), out.out, out.err
