"""The ``govclock`` command: run, replay, rules, bench, schemas."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config.calendar_files import CalendarFileError, load_calendar
from config.packs import load_rulebook
from config.tables import render_report, render_rule, render_rules
from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger
from deadlines.replay import ReplayResult, last_event_time, replay
from deadlines.report import build_report
from deadlines.rules import RuleBook, RulePackError
from deadlines.timefmt import rfc3339
from deadlines.timeparse import parse_as_of
from govclock.history import HistoryError, read_history
from govclock.runtime import tune_gc

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _book(args: argparse.Namespace) -> RuleBook:
    return load_rulebook(packs_dir=args.packs, units_file=args.units)


def run_replay(
    history: Path,
    as_of: str | None,
    book: RuleBook,
    calendar: WorkCalendar,
    strict: bool = False,
) -> ReplayResult:
    events, rejected = read_history(history, strict=strict)
    tune_gc()  # the history stays in memory: keep the collector off it
    if as_of is None:
        latest = last_event_time(events)
        if latest is None:
            raise HistoryError(f"{history}: no events, so --as-of must be given")
        when = latest
    else:
        when = parse_as_of(as_of, int(time.time()))
    return replay(Ledger(book, calendar), events, when, rejected)


def replay_report(result: ReplayResult, history: Path) -> dict[str, Any]:
    ledger = result.ledger
    return build_report(
        ledger.obligations(),
        as_of=rfc3339(result.as_of),
        source=str(history),
        events={
            "applied": result.applied - ledger.duplicates,
            "duplicates": ledger.duplicates,
            "without_subject": ledger.unrouted,
            "after_as_of": result.future,
            "rejected": len(result.rejected),
        },
        rejected=[{"line": r.line, "reason": r.reason} for r in result.rejected],
        calendar={
            "fingerprint": ledger.calendar.fingerprint,
            "known_years": [min(ledger.calendar.known_years), max(ledger.calendar.known_years)],
        },
    )


def cmd_replay(args: argparse.Namespace) -> int:
    history = Path(args.file)
    result = run_replay(history, args.as_of, _book(args), load_calendar(args.calendar), args.strict)
    report = replay_report(result, history)
    if args.format == "json":
        json.dump(report, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_report(report))
    for r in result.rejected:
        print(f"{history}:{r.line}: rejected: {r.reason}", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The live monitor: embedded broker (or KAFKA_BROKER), Faust worker, web server."""
    from config.settings import load_settings
    from monitor.run import run

    return run(load_settings())


def cmd_token(args: argparse.Namespace) -> int:
    """Mint a reader's API token: the token once, and the hash for the readers file."""
    from datetime import UTC, datetime

    from config.readers import mint_token, valid_reader_name

    if not valid_reader_name(args.reader):
        print(
            f"govclock: {args.reader!r}: a reader's name is letters, digits and _.@- (at most 64)",
            file=sys.stderr,
        )
        return 2
    token, digest = mint_token()
    print(
        f"API token for reader {args.reader} (shown this once; give it to the reader, "
        "keep no copy):"
    )
    print(f"  {token}")
    print(
        "Its hash, for the readers file (GOVCLOCK_READERS_FILE; add it under an existing "
        "reader's token_sha256 to rotate, then remove the old one):"
    )
    print(f"readers:\n  {args.reader}:\n    token_sha256:")
    print(f"      - {digest}  # minted {datetime.now(UTC).date().isoformat()}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Replay the bundled sample history and print the report."""
    history = EXAMPLES / "sample-history.jsonl"
    book = load_rulebook(units_file=EXAMPLES / "units.yaml")
    result = run_replay(history, args.as_of, book, load_calendar([]))
    sys.stdout.write(render_report(replay_report(result, history)))
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    book = _book(args)
    if args.action == "list":
        sys.stdout.write(render_rules(book, args.pack))
        return 0
    versions = book.find(args.rule_id, args.pack)
    if not versions:
        print(
            f"no rule {args.rule_id!r}" + (f" in pack {args.pack!r}" if args.pack else ""),
            file=sys.stderr,
        )
        return 2
    sys.stdout.write(render_rule(versions))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.history:
        from govclock.bench_history import run_history_bench

        print(json.dumps(run_history_bench(args.open, args.postgres), indent=2))
        return 0
    if args.query:
        from govclock.bench_query import run_query_bench

        print(json.dumps(run_query_bench(open_obligations=args.open), indent=2))
        return 0
    if args.pipeline:
        from govclock.bench_pipeline import run_pipeline_bench

        result = run_pipeline_bench(events=args.events, seed=args.seed, workers=args.workers)
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from govclock.bench import run_bench

    result = run_bench(events=args.events, open_obligations=args.open, seed=args.seed)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from archive.store import Archive
    from config.settings import load_settings
    from govclock import compliance

    period = compliance.Period.of_dates(args.from_, args.to, args.unit, args.rule)
    settings = load_settings()
    archive = Archive.open(args.archive or settings.archive_database_url)
    try:
        opened = [] if args.archive_only else compliance.open_views(args.monitor, period)
        views = [*opened, *compliance.archived_views(archive, period)]
    finally:
        archive.close()
    report = compliance.build(views, period)
    sys.stdout.write(compliance.render(report, args.format, args.headers))
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from schemas.export import DEFAULT_DIR, check_json_schemas, write_json_schemas

    if args.write:
        for path in write_json_schemas(DEFAULT_DIR):
            print(path)
        return 0
    stale = check_json_schemas(DEFAULT_DIR)
    for name in stale:
        print(f"stale: {name} (run `make schemas`)", file=sys.stderr)
    return 1 if stale else 0


DEFAULT_OPEN = 1_000_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="govclock",
        description="Monitor of government-affairs disclosure and public-opinion deadlines.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_rules(p: argparse.ArgumentParser) -> None:
        p.add_argument("--packs", help="directory of extra/overriding rule packs (*.yaml)")
        p.add_argument("--units", help="units file: which pack and kind each unit uses")

    p = sub.add_parser("run", help="run the live monitor (settings from the environment/.env)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("token", help="mint a reader's API token and print its hash")
    p.add_argument("reader", help="the reader's name in the readers file")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("demo", help="replay the bundled sample history and print the report")
    p.add_argument("--as-of", help="report time (default: the last event)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("replay", help="run a history (JSON Lines) through the core")
    p.add_argument("file")
    p.add_argument("--as-of", help="RFC 3339 time, date, or 'now' (default: the last event)")
    p.add_argument("--format", choices=("json", "table"), default="table")
    p.add_argument("--strict", action="store_true", help="a bad line is fatal")
    p.add_argument(
        "--calendar", action="append", default=[], help="holiday table file (repeatable)"
    )
    with_rules(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("rules", help="list rules or show one with its sources")
    rules_sub = p.add_subparsers(dest="action", required=True)
    pl = rules_sub.add_parser("list")
    pl.add_argument("--pack", help="only this pack")
    with_rules(pl)
    ps = rules_sub.add_parser("show")
    ps.add_argument("rule_id")
    ps.add_argument("--pack", help="only this pack")
    with_rules(ps)
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("bench", help="benchmark the core (no broker); prints JSON")
    p.add_argument("--events", type=int, default=300_000)
    p.add_argument("--open", type=int, default=DEFAULT_OPEN, help="open obligations to hold")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--pipeline",
        action="store_true",
        help="through the embedded broker and a worker, next to the raw consume rate",
    )
    p.add_argument(
        "--query",
        action="store_true",
        help="first pages of GET /v1/obligations at --open obligations, loop stall and "
        "breach lateness meanwhile",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="with --pipeline: worker processes on the broker"
    )
    p.add_argument(
        "--history",
        action="store_true",
        help="restart-to-ready with 100k and 1M events of history, memory per open obligation, "
        "archive write rates",
    )
    p.add_argument("--postgres", help="with --history: a PostgreSQL URL to time archive writes")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "report", help="on-time rates for a period, from the archive and the live monitor"
    )
    p.add_argument("--from", dest="from_", required=True, help="first day (YYYY-MM-DD)")
    p.add_argument("--to", required=True, help="day after the last (YYYY-MM-DD, exclusive)")
    p.add_argument("--unit", help="only this unit")
    p.add_argument("--rule", help="only this rule id")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--headers", choices=("zh", "en"), default="zh", help="CSV headers")
    p.add_argument(
        "--archive", help="archive URL (default: GOVCLOCK_ARCHIVE_URL or the data dir's)"
    )
    p.add_argument(
        "--monitor", default="http://127.0.0.1:6066", help="the live monitor, for what is open"
    )
    p.add_argument(
        "--archive-only", action="store_true", help="leave out what is still open (no monitor)"
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("schemas", help="check (default) or --write the JSON Schema files")
    p.add_argument("--write", action="store_true")
    p.set_defaults(func=cmd_schemas)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        # The reader went away (`govclock replay ... | head`): stop quietly, not a usage error.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (RulePackError, CalendarFileError, HistoryError, ValueError, OSError) as exc:
        print(f"govclock: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
