"""How the identity commands print: aligned tables and labelled details for people."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import click


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    cells = [[cell(value) for value in row] for row in rows]
    if not cells:
        click.echo("(none)")
        return
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        click.echo(
            "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        )


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def when(iso: str | None) -> str:
    """A server timestamp, shortened for a table (still UTC)."""
    return "-" if iso is None else iso.replace("T", " ")[:16] + "Z"


def parse_iso(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def details(pairs: Iterable[tuple[str, object]]) -> None:
    pairs = list(pairs)
    width = max(len(label) for label, _ in pairs)
    for label, value in pairs:
        click.echo(f"  {label + ':':<{width + 1}} {cell(value)}")
