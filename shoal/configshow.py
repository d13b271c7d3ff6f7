"""`shoal config show`: a command's effective settings, and where each came from."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from shoal.config import Resolved


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return f"{value[0]}:{value[1]}"  # a parsed HOST:PORT, shown as written
    return value


def render(resolved: Resolved, args: argparse.Namespace, as_json: bool) -> None:
    values = {name: _plain(v) for name, v in sorted(resolved.values.items())
              if name != "password"}
    if "password" in resolved.values and resolved.values["password"] is not None:
        values["password"] = "********"
    sources = {name: resolved.sources.get(name, "default") for name in values}
    if as_json:
        print(json.dumps({"command": resolved.command,
                          "file": str(resolved.file) if resolved.file else None,
                          "settings": {n: {"value": v, "source": sources[n]}
                                       for n, v in values.items()}}, indent=2))
        return
    table = Table(title=f"shoal {resolved.command}: effective settings")
    table.add_column("option")
    table.add_column("value")
    table.add_column("from")
    for name, value in values.items():
        source = sources[name]
        style = "dim" if source == "default" else ""
        table.add_row(f"--{name}", "" if value is None else str(value),
                      f"[{style}]{source}[/{style}]" if style else source)
    console = Console(highlight=False)
    console.print(table)
    console.print(f"config file: {resolved.file or 'none'} "
                  "(flags > environment > file > defaults)")
