"""Reading operator YAML files with errors that name the file (one place for all of them)."""

from __future__ import annotations

from pathlib import Path

import yaml


def read_yaml(path: Path, error: type[ValueError]) -> object:
    """The parsed document; any problem raises ``error`` naming the file."""
    try:
        with path.open(encoding="utf-8") as fh:  # a stream, so YAML errors name the file
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8: {exc.reason} at byte {exc.start}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
