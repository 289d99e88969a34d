"""Output of the benchmarks: markdown tables on stdout, JSON (and the PNGs beside it) under `RESULTS`."""

from __future__ import annotations

import json
import os
from pathlib import Path


RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).resolve().parent / "results")
"""Where results go: `benchmarks/results/`, or `$BENCH_RESULTS_DIR` (the tests write to a temporary folder)."""


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table; columns = (key, header, format). Missing values and NaN print as `-`."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            if value is None or (isinstance(value, float) and value != value):
                cells.append("-")
            elif isinstance(value, str):
                cells.append(value)
            else:
                cells.append(format(value, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(name: str, payload: dict) -> Path:
    """Write `payload` to `RESULTS / name` (indented; non-JSON values as strings); return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    return path


def pyplot():
    """`matplotlib.pyplot` on the non-interactive Agg backend (imported only when a figure is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Lay the figure out, write it to `path` as a 110-dpi PNG, and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
