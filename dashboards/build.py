"""Write the dashboards as JSON, or check that the committed JSON is up to date.

    python -m dashboards.build           # (re)write dashboards/generated/*.json
    python -m dashboards.build --check   # exit 1 if a file differs from a fresh build

The JSON is Grafana's dashboard model (import it in the UI, provision it from a file or
POST it to /api/dashboards/db), keys sorted, indented by 2, UTF-8. The builders are
:mod:`dashboards.oncall`, :mod:`dashboards.compliance` and :mod:`dashboards.pipeline`, whose
every metric is defined in :mod:`metrics.collectors`, and :mod:`dashboards.archive_board`,
which reads the SQL archive through a PostgreSQL data source. The alert rules are
``dashboards/alerts.yaml`` with promtool unit tests in ``dashboards/alerts_test.yaml``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards.archive_board import archive_board
from dashboards.compliance import compliance
from dashboards.oncall import oncall
from dashboards.pipeline import pipeline

#: File stem → builder. The stem is also the dashboard's uid after ``govclock-``.
DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "oncall": oncall,
    "compliance": compliance,
    "pipeline": pipeline,
    "archive": archive_board,
}
GENERATED = Path(__file__).resolve().parent / "generated"


def render(builder: dashboard.Dashboard) -> str:
    """The dashboard's JSON text, exactly as committed."""
    encoder = JSONEncoder(sort_keys=True, indent=2, ensure_ascii=False)
    return encoder.encode(builder.build()) + "\n"


def rendered() -> dict[str, str]:
    """File name → JSON text of every dashboard, freshly built."""
    return {f"{name}.json": render(build()) for name, build in DASHBOARDS.items()}


def stale(directory: Path = GENERATED) -> list[str]:
    """What differs between ``directory`` and a fresh build (empty when up to date)."""
    fresh = rendered()
    problems = []
    for name, text in fresh.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from a fresh build")
    for path in sorted(directory.glob("*.json")):
        if path.name not in fresh:
            problems.append(f"{path}: no builder makes this file")
    return problems


def write(directory: Path = GENERATED) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="only check the committed JSON; exit 1 if stale"
    )
    parser.add_argument("--out", type=Path, default=GENERATED, help="output directory")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale(args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: python -m dashboards.build", file=sys.stderr)
            return 1
        print(f"{len(DASHBOARDS)} dashboards up to date in {args.out}")
        return 0
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
