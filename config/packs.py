"""Loading rule packs and the unit map from files (the I/O side of :mod:`deadlines.rules`).

Bundled packs live in ``deadlines/packs/``; operators add or override packs with YAML files
in a directory of their own (``GOVCLOCK_PACKS_DIR``), and map units to packs in a units file
(``GOVCLOCK_UNITS_FILE``). See docs/rule-packs.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from config.yaml_files import read_yaml as read_yaml_file
from deadlines.rules import (
    UNIT_KINDS,
    Pack,
    PackSpec,
    RuleBook,
    RulePackError,
    UnitConfig,
    build_pack,
    parse_pack,
)

DEFAULT_PACK = "default"


def bundled_pack_files() -> list[Path]:
    root = resources.files("deadlines") / "packs"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml"))


def read_yaml(path: Path) -> object:
    return read_yaml_file(path, RulePackError)


def load_packs(files: Iterable[Path]) -> dict[str, Pack]:
    """Parse every pack file and build each pack after its parent (``extends``)."""
    specs: dict[str, tuple[PackSpec, str]] = {}
    for path in files:
        spec = parse_pack(read_yaml(path), str(path))
        specs[spec.pack] = (spec, str(path))  # a later file with the same name overrides
    built: dict[str, Pack] = {}

    def build(name: str, chain: tuple[str, ...]) -> Pack:
        if name in built:
            return built[name]
        if name in chain:
            raise RulePackError(f"{specs[name][1]}: extends cycle: {' -> '.join((*chain, name))}")
        spec, source = specs[name]
        parent = None
        if spec.extends is not None:
            if spec.extends not in specs:
                raise RulePackError(f"{source}: extends: no pack named {spec.extends!r}")
            parent = build(spec.extends, (*chain, name))
        built[name] = build_pack(spec, source, parent)
        return built[name]

    for name in specs:
        build(name, ())
    return built


def parse_units(data: object, source: str) -> tuple[str | None, dict[str, UnitConfig]]:
    """A units file: ``default_pack`` and ``units: [{id, pack, kind, name}]``."""
    if not isinstance(data, dict):
        raise RulePackError(f"{source}: expected a mapping with 'units'")
    unknown = set(data) - {"default_pack", "units"}
    if unknown:
        raise RulePackError(f"{source}: unknown keys {sorted(unknown)}")
    default = data.get("default_pack")
    unit_default = str(default) if default is not None else DEFAULT_PACK
    units: dict[str, UnitConfig] = {}
    for i, item in enumerate(data.get("units") or []):
        where = f"{source}: units[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise RulePackError(f"{where}: needs an 'id' (string)")
        extra = set(item) - {"id", "pack", "kind", "name"}
        if extra:
            raise RulePackError(f"{where} ({item['id']}): unknown keys {sorted(extra)}")
        kind = item.get("kind", "department")
        if kind not in UNIT_KINDS:
            raise RulePackError(f"{where} ({item['id']}): kind: {kind!r} not in {UNIT_KINDS}")
        if item["id"] in units:
            raise RulePackError(f"{where} ({item['id']}): id: duplicate unit {item['id']!r}")
        units[item["id"]] = UnitConfig(
            id=item["id"],
            pack=str(item.get("pack", unit_default)),  # a listed unit without pack: default_pack
            kind=kind,
            name=item.get("name"),
        )
    return (str(default) if default is not None else None), units


def load_rulebook(
    packs_dir: str | Path | None = None, units_file: str | Path | None = None
) -> RuleBook:
    """Bundled packs, then the operator's packs (which may override them), then units."""
    packs_dir = packs_dir or os.environ.get("GOVCLOCK_PACKS_DIR") or None
    units_file = units_file or os.environ.get("GOVCLOCK_UNITS_FILE") or None
    files = bundled_pack_files()
    if packs_dir is not None:
        files += sorted(Path(packs_dir).glob("*.yaml"))
    packs = load_packs(files)
    default, units = DEFAULT_PACK, dict[str, UnitConfig]()
    if units_file is not None:
        chosen, units = parse_units(read_yaml(Path(units_file)), str(units_file))
        default = chosen or DEFAULT_PACK
        have = f"(have: {', '.join(sorted(packs))})"
        if default not in packs:
            raise RulePackError(f"{units_file}: default_pack: {default!r} is not loaded {have}")
        for i, unit in enumerate(units.values()):
            if unit.pack not in packs:
                where = f"{units_file}: units[{i}] ({unit.id})"
                raise RulePackError(f"{where}: pack: {unit.pack!r} is not loaded {have}")
    return RuleBook(packs=packs, default_pack=default, units=units)
