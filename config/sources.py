"""Webhook sources: who may send events, with which secret, for which unit, in what shape.

A sources file (``GOVCLOCK_SOURCES_FILE``)::

    sources:
      cms-sh:                         # the name senders put in X-Govclock-Source
        secret_env: GOVCLOCK_SECRET_CMS_SH   # or: secret: "…" (prefer the environment)
        unit: sh-jiaowei              # unit for adapter payloads, which carry none
        adapter: ghost                # ghost | strapi | wordpress | cap (POST /v1/hooks/cms-sh)

With no sources file the monitor accepts unsigned requests (a development set-up, bound to
127.0.0.1); with one, every request must be signed by a listed source.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from config.yaml_files import read_yaml
from sources.common import ADAPTER_NAMES


class SourcesError(ValueError):
    """A malformed sources file: names the file, the source and the field."""


@dataclass(frozen=True)
class Source:
    name: str
    secrets: tuple[bytes, ...]
    unit: str | None = None
    adapter: str | None = None


def parse_sources(data: object, where: str, env: Mapping[str, str]) -> dict[str, Source]:
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        raise SourcesError(f"{where}: expected a mapping with 'sources: {{name: …}}'")
    out: dict[str, Source] = {}
    for name, spec in data["sources"].items():
        at = f"{where}: sources.{name}"
        if not isinstance(spec, dict):
            raise SourcesError(f"{at}: expected a mapping")
        unknown = set(spec) - {"secret", "secret_env", "unit", "adapter"}
        if unknown:
            raise SourcesError(f"{at}: unknown key(s) {sorted(unknown)}")
        if ("secret" in spec) == ("secret_env" in spec):
            raise SourcesError(f"{at}: give exactly one of secret, secret_env")
        if "secret_env" in spec:
            value = env.get(str(spec["secret_env"]))
            if not value:
                raise SourcesError(f"{at}.secret_env: {spec['secret_env']} is not set")
        else:
            value = str(spec["secret"])
        if len(value) < 16:
            raise SourcesError(f"{at}: the secret is shorter than 16 characters")
        adapter = spec.get("adapter")
        if adapter is not None and adapter not in ADAPTER_NAMES:
            raise SourcesError(f"{at}.adapter: {adapter!r} is not one of {ADAPTER_NAMES}")
        unit = spec.get("unit")
        if adapter is not None and not unit:
            raise SourcesError(f"{at}.unit: an adapter source needs the unit its payloads are for")
        out[str(name)] = Source(str(name), (value.encode(),), unit, adapter)
    return out


def load_sources(path: Path | None) -> dict[str, Source]:
    if path is None:
        return {}
    return parse_sources(read_yaml(path, SourcesError), str(path), os.environ)
