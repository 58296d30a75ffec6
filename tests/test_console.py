"""Piped output is never cut to 80 columns: tables print full lines when stdout is not a terminal."""

from __future__ import annotations

from cli_helpers import run_cli

from medlens.models.registry import list_models


def test_models_table_prints_full_lines_when_piped(monkeypatch, capsys):
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, err = run_cli(monkeypatch, capsys, "models")
    assert code == 0, err
    lines = out.splitlines()
    for m in list_models(None):
        row = next((line for line in lines if line.startswith(f"│ {m.name} ")), None)
        assert row is not None, f"{m.name} not on a line of its own:\n{out}"
        assert m.description in row and "…" not in row  # the whole description, on the model's line


def test_the_console_keeps_the_terminal_width_on_a_terminal(monkeypatch):
    from medlens.utils.console import PIPE_WIDTH, console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert console().width == PIPE_WIDTH and console(stderr=True).width == PIPE_WIDTH
    monkeypatch.setenv("COLUMNS", "120")
    assert console().width == 120
