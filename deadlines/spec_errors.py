"""pydantic errors in operators' YAML files (rule packs, rosters, escalation policies), as
``file: where: message`` lines: one wording for every file an operator edits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails


def yaml_message(err: ErrorDetails) -> tuple[list[int | str], str]:
    """One pydantic error's location and message, in the terms of the YAML an operator
    wrote: an unknown key is "misspelt?", a key YAML read as a boolean is named as such."""
    loc = list(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key (misspelt?)"
    elif err["type"] == "invalid_key" and isinstance(err.get("input"), bool):
        loc = loc[:-1]  # the key itself, shown by pydantic as 1 or 0
        msg = f"a key reads as the YAML boolean {err['input']} (on/off/yes/no): quote it"
    return loc, msg


def describe_errors(exc: ValidationError, data: object, source: str) -> str:
    """pydantic errors as ``file: path.to[field]: message`` lines, the path read off the data
    (``units.jiaoyu-ju.levels.1.rotation.people[1]``; a list item with an ``id`` is named)."""
    lines = []
    for err in exc.errors(include_url=False):
        loc, msg = yaml_message(err)
        lines.append(f"{source}: {render_path(data, loc) or '(document)'}: {msg}")
    return "\n".join(lines)


def render_path(data: object, loc: Sequence[int | str]) -> str:
    out = ""
    node: Any = data
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if isinstance(node, list) and isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if 0 <= part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                out += f" ({node['id']})"
            continue
        name = "from" if part == "from_" else str(part)
        out += f".{name}" if out else name
        node = node.get(part, node.get(name)) if isinstance(node, dict) else None
    return out
