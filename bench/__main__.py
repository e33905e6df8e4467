"""`python -m bench 02 [--quick] [--max-clients N] [--modes a,b]`, `python -m bench 03|04 [--quick]`,
`python -m bench 05 [--quick] [--tasks N] [--burst M]`, `python -m bench 06 [--quick]` (chapter 06's
replay, its log's memory and write path, and its drills' counts), `python -m bench hosts
[--quick]` (the drills beyond one machine, 20 Sentinel failovers in a row; root), `python -m bench
suite [--sessions a,b]` (how long each chapter's tests take), `python -m bench knobs [--quick]`
(what each setting does to chapter 02's gevent app), `python -m bench guard [--quick]`
(chapter 02's CPU per inbound event, its guard on and off); `python -m bench NN --report-only`
draws the plots and writes the summary again, its runs on each machine included, from the
stored JSON."""

from __future__ import annotations

import argparse
import sys

from bench import (
    async_modes,
    celery_tasks,
    common,
    delivery,
    guard_cost,
    hosts,
    knobs,
    nginx_lb,
    redis_scaling,
    report,
    suite,
)

# Each module's record name, plots, summary and headline figures, for --report-only.
REPORTS = {
    "02": async_modes,
    "03": redis_scaling,
    "04": nginx_lb,
    "05": celery_tasks,
    "06": delivery,
    "hosts": hosts,
    "suite": suite,
    "knobs": knobs,
    "guard": guard_cost,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "chapter",
        choices=list(REPORTS),
        help="which chapter's scenarios to run; suite: how long each chapter's tests take; "
        "knobs: each setting against chapter 02's gevent baseline; "
        "guard: chapter 02's CPU per inbound event, its guard on and off; "
        "hosts: the drills beyond one machine (root)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small counts: a smoke check, written to .lab/bench-quick/ (its record says how long it took)",
    )
    parser.add_argument("--max-clients", type=int, help="the largest step (default: 10,000; 4,000 for 03)")
    parser.add_argument(
        "--modes",
        help=f"02 only, comma-separated (default: {','.join(async_modes.DEFAULT_MODES)}; "
        f"all: {','.join(async_modes.MODES)})",
    )
    parser.add_argument("--tasks", type=int, help="05 only: no-op tasks timed one at a time (default: 300)")
    parser.add_argument("--burst", type=int, help="05 only: no-op tasks per worker setup (default: 400)")
    parser.add_argument(
        "--sessions",
        help=f"suite only, comma-separated (default: all: {','.join(suite.SESSIONS)}); "
        "a subset is written to .lab/bench-quick/ unless --out says where",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="draw the plots and write the summary again from the stored JSON (<NAME>.json and "
        "runs/<NAME>/, the latest run on each machine), measuring nothing",
    )
    parser.add_argument("--out", help="where to write the JSON, plots and summary (default: docs/bench/)")
    args = parser.parse_args(argv)

    if args.report_only:
        module = REPORTS[args.chapter]
        out_dir = common.output_dir(False, args.out)
        record = report.rewrite_summary(
            module.NAME, out_dir, module.summary_markdown, module.headline, module.PLOT
        )
        report.print_targets(record)
        return 0
    if args.chapter == "suite":
        sessions = _names(args.sessions) or list(suite.SESSIONS)
        if unknown := sorted(set(sessions) - set(suite.SESSIONS)):
            parser.error(f"--sessions: unknown {', '.join(unknown)}; known: {', '.join(suite.SESSIONS)}")
        record = suite.run(sessions, args.out)
    elif args.chapter == "02":
        modes = list(async_modes.MODES) if args.modes == "all" else _names(args.modes)
        modes = modes or list(async_modes.DEFAULT_MODES)
        record = async_modes.run(args.quick, args.max_clients, modes, args.out)
    elif args.chapter == "knobs":
        record = knobs.run(args.quick, args.max_clients, args.out)
    elif args.chapter == "guard":
        record = guard_cost.run(args.quick, args.out)
    elif args.chapter == "03":
        record = redis_scaling.run(args.quick, args.max_clients, args.out)
    elif args.chapter == "04":
        record = nginx_lb.run(args.quick, args.max_clients, args.out)
    elif args.chapter == "06":
        record = delivery.run(args.quick, args.out)
    elif args.chapter == "hosts":
        record = hosts.run(args.quick, args.out)
    else:
        record = celery_tasks.run(args.quick, args.tasks, args.burst, args.out)
    report.print_targets(record)
    return 0


def _names(option: str | None) -> list[str]:
    """A comma-separated option as a list, blanks dropped."""
    return [name.strip() for name in (option or "").split(",") if name.strip()]


if __name__ == "__main__":
    sys.exit(main())
