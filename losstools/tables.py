"""Small tables and numbers for notebooks: rendered as Markdown tables in JupyterLab, plain text elsewhere.

Numbers that are round-off (``3e-17``) differ between CPUs and thread counts; :func:`bounded` prints them as
a bound (``"below 1e-12"``), so a stored notebook output is the same on any machine.
"""
from __future__ import annotations

from typing import Sequence


def bounded(value: float, floor: float = 1e-12, fmt: str = ".3g") -> str:
    """``value`` formatted with ``fmt``, or ``"below {floor:g}"`` when ``|value| < floor`` (round-off)."""
    value = float(value)
    return f"below {floor:g}" if abs(value) < floor else format(value, fmt)


class Table:
    """A table of ``rows`` (sequences of cells) under ``columns``; cells that are floats are formatted with
    ``fmt`` (one format, or one per column; ``None`` keeps ``str(cell)``). Displays as a Markdown table in
    JupyterLab (``_repr_markdown_``) and as aligned plain text otherwise (``repr``)."""

    def __init__(self, rows: Sequence[Sequence], columns: Sequence[str], fmt: str | Sequence[str | None] = ".3f"):
        formats = [fmt] * len(columns) if isinstance(fmt, str) or fmt is None else list(fmt)
        if len(formats) != len(columns):
            raise ValueError(f"fmt has {len(formats)} formats for {len(columns)} columns: give one per column")
        for i, row in enumerate(rows):
            if len(row) != len(columns):
                raise ValueError(f"row {i} has {len(row)} cells for {len(columns)} columns {list(columns)}")
        self.columns = [str(c) for c in columns]
        self.cells = [[self._cell(v, f) for v, f in zip(row, formats)] for row in rows]

    @staticmethod
    def _cell(value, fmt: str | None) -> str:
        if isinstance(value, float) and fmt is not None:
            text = format(value, fmt)
            return text[1:] if text.startswith("-") and float(text) == 0 else text   # no "-0.000"
        return str(value)

    def _repr_markdown_(self) -> str:
        def escape(cells):
            return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
        lines = [escape(self.columns), "|" + "---|" * len(self.columns)] + [escape(row) for row in self.cells]
        return "\n".join(lines)

    def __repr__(self) -> str:
        widths = [max([len(c)] + [len(row[i]) for row in self.cells]) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(self.columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in self.cells]
        return "\n".join(lines)
