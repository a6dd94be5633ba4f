"""Loading escalation policies and the on-call roster from files (the I/O side of
:mod:`deadlines.escalation` and :mod:`deadlines.roster`).

The bundled policy is ``deadlines/policies/default.yaml``; operators give their own with
``GOVCLOCK_POLICY_FILE`` and the roster with ``GOVCLOCK_ROSTER_FILE`` (docs/escalation.md).
Every error message starts with the file name and names the field, e.g.
``roster.yaml: units.jiaoyu-ju.levels.1.rotation.people[1]: unknown person 'li-si'``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from config.yaml_files import read_yaml
from deadlines.escalation_policy import (
    PolicyBook,
    PolicyError,
    build_policies,
    parse_policies,
    policy_problems,
)
from deadlines.roster import Roster, RosterError, build_roster, parse_roster

__all__ = [
    "bundled_policy_file",
    "load_escalation",
    "load_policies",
    "load_roster",
]


def bundled_policy_file() -> Path:
    return Path(str(resources.files("deadlines") / "policies" / "default.yaml"))


def load_policies(path: str | Path | None = None) -> PolicyBook:
    """The policy file at ``path`` (else ``GOVCLOCK_POLICY_FILE``, else the bundled one)."""
    chosen = path or os.environ.get("GOVCLOCK_POLICY_FILE") or None
    file = Path(chosen) if chosen is not None else bundled_policy_file()
    data = read_yaml(file, PolicyError)
    return build_policies(parse_policies(data, str(file)), str(file))


def load_roster(path: str | Path | None = None) -> Roster:
    """The roster at ``path`` (else ``GOVCLOCK_ROSTER_FILE``); there is no bundled roster."""
    chosen = path or os.environ.get("GOVCLOCK_ROSTER_FILE") or None
    if chosen is None:
        raise RosterError("no roster file: give one, or set GOVCLOCK_ROSTER_FILE")
    file = Path(chosen)
    data = read_yaml(file, RosterError)
    if data is None:
        raise RosterError(f"{file}: empty file; a roster needs people and units")
    return build_roster(parse_roster(data, str(file)), str(file))


def load_escalation(
    policy_path: str | Path | None = None, roster_path: str | Path | None = None
) -> tuple[PolicyBook, Roster]:
    """Both files, checked against each other: every unit a policy names (other than the
    obligation's own) must be in the roster, with the level named."""
    book = load_policies(policy_path)
    roster = load_roster(roster_path)
    problems = policy_problems(book, roster)
    if problems:
        raise PolicyError("\n".join(problems))
    return book, roster
