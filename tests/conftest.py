"""Shared fixtures: small and generic (rule books with a units file in a temporary directory)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.packs import load_rulebook
from deadlines.rules import RuleBook
from tests.pgserver import PostgresServer


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster on 127.0.0.1 for the session (tests/pgserver.py); fails,
    not skips, without the binaries (`make tools` installs them)."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """The SQLAlchemy URL (``postgresql+psycopg://govclock@127.0.0.1:<port>/postgres``)."""
    return postgres_server.url
