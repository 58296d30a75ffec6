"""Output helpers shared by several commands: skipped files, a run's summary, a metric with its CI."""

from __future__ import annotations

import json
from pathlib import Path

from medlens.cli.app import _console


def _print_skipped(skipped: list, n_read: int, where: Path, notes: list | None = None) -> None:
    """Name the files a dataset command skipped (and those read with a caveat), on stderr."""
    from rich.markup import escape

    from medlens.io.guard import skipped_lines

    console = _console(stderr=True)
    for line in skipped_lines(skipped, n_read + len(skipped), str(where), notes=notes):
        console.print(escape(line), style=None if line.startswith(" ") else "yellow", soft_wrap=True)


def _print_summary(path: Path) -> None:
    s = json.loads(path.read_text())
    c = _console()
    final = s.get("final")
    if final and s.get("evaluated_model") == "selection":
        c.print(
            f"[bold]{s['split']}[/] split, {s['n_cases']} cases, scored with the selection model (trained "
            f"on train only); the run's model was then refit on train + val for {final['epochs']} epochs and "
            "has no held-out score here:"
        )
    else:
        c.print(f"[bold]{s['split']}[/] split, {s['n_cases']} cases:")
    for name, m in s["metrics"].items():
        if m.get("value") is not None:
            ci = m.get("ci95") or [None, None]
            ci_text = f"  (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci[0] is not None else ""
            c.print(f"  {name:18s} {m['value']:.3f}{ci_text}")
    c.print(f"report: {path.parent / 'report.html'}")


def _entry(entry: dict) -> str:
    ci = entry.get("ci95")
    return f"{entry['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
