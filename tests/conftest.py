"""Shared fixtures: small and generic (rule books with a units file in a temporary directory)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.packs import load_rulebook
from deadlines.rules import RuleBook


@pytest.fixture
def units_book(tmp_path: Path) -> Callable[..., RuleBook]:
    """``units_book([{id, pack, kind}], default_pack=...)``: the bundled packs with a units file."""

    def make(units: list[dict[str, Any]], default_pack: str = "default") -> RuleBook:
        path = tmp_path / "units.yaml"
        path.write_text(
            yaml.safe_dump({"default_pack": default_pack, "units": units}), encoding="utf-8"
        )
        return load_rulebook(units_file=path)

    return make
