"""Command line of ``sqlcoder-eval``: ``load``, ``run``, ``report``, ``check`` and ``judge``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .compare import ORDER_POLICIES
from .dataset import DATA_ENV, Dataset, resolve_data_dir
from .judges import DEFAULT_JUDGE, JUDGES
from .predictors import PREDICTORS, make_predictor
from .runner import RunOptions, read_records, run

__all__ = ["main", "build_parser"]

DSN_HELP = ("libpq connection string of the server; its dbname is the maintenance database for load "
            "(default: '' = libpq defaults and PG* environment variables)")


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help=f"defog-data style folder (default: ${DATA_ENV})")


def _add_policy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--order-policy", choices=ORDER_POLICIES, default="sql-eval",
                   help="strict judge only: how ordered questions compare rows, re-sorted by the first "
                        "ORDER BY key as sql-eval does, or strictly in returned order (default: %(default)s)")


def _add_judge(p: argparse.ArgumentParser, default: str | None = DEFAULT_JUDGE) -> None:
    p.add_argument("--judge", choices=JUDGES, default=default, required=default is None,
                   help="sql-eval = sql-eval's verdicts, quirks included (the model card's scale); strict = "
                        "this project's stricter rules (see docs/evaluation.md)"
                        + (" (default: %(default)s)" if default else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sqlcoder-eval", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("load", help="create the databases of a data folder")
    _add_data(p)
    p.add_argument("--dsn", default="", help=DSN_HELP)
    p.add_argument("--db", action="append", help="only this database (repeatable)")
    p.add_argument("--no-extension", action="store_true",
                   help="do not install the extension (join hints and glossary are then skipped)")
    p.add_argument("--replace", action="store_true", help="drop a database of the same name first")
    p.add_argument("--glossary", action="store_true",
                   help="also add the metadata's glossary as instructions (sql-eval's prompt for SQLCoder-70B "
                        "had none, so evaluation leaves it out by default)")
    p.add_argument("--config", action="append", default=[], type=_key_value, metavar="KEY=VALUE",
                   help="set a sqlcoder.config value in each database, e.g. socket_path=/run/sqlcoder/sqlcoder.sock "
                        "or num_beams=4 (repeatable)")

    p = sub.add_parser("run", help="judge every question; append one JSON line per question")
    _add_data(p)
    p.add_argument("--questions", action="append",
                   help="a sql-eval question file, e.g. instruct_advanced_postgres.csv (repeatable; results are "
                        "also reported per file) (default: DATA/questions_gen_postgres.csv)")
    p.add_argument("--dsn", default="", help=DSN_HELP)
    p.add_argument("--out", required=True, help="results file (JSON lines)")
    p.add_argument("--run-name", help="the run's name in reports (default: the predictions' name)")
    p.add_argument("--predictions", choices=PREDICTORS, default="ask",
                   help="ask = sqlcoder.ask() in each database; gold = the gold query (scores 100%%); "
                        "perturbed = a broken gold query (scores 0%%) (default: %(default)s)")
    p.add_argument("--parallel", type=int, default=1, help="concurrent sessions (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="statement_timeout for each executed query, seconds (default: %(default)s)")
    p.add_argument("--ask-timeout", type=float, default=0,
                   help="statement_timeout for sqlcoder.ask(), seconds; 0 = none (default: %(default)s)")
    p.add_argument("--max-rows", type=int, default=100_000, help="a result with more rows is an error")
    p.add_argument("--resume", action="store_true", help="skip questions of this run already in --out")
    p.add_argument("--category", action="append", help="only this category (repeatable)")
    p.add_argument("--db", action="append", help="only questions on this database (repeatable)")
    p.add_argument("--limit", type=int, help="only the first N questions (after filtering)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--prompt-profile", choices=("sql-eval", "default"),
                   help="set each database's template first: sql-eval = what sql-eval rendered for the served "
                        "model (the card's prompt); default = what ask sends in production (default: leave the "
                        "databases' setting as it is)")
    _add_judge(p)
    _add_policy(p)

    p = sub.add_parser("report", help="per-category table from results files")
    p.add_argument("results", nargs="*", help="results files (JSON lines)")
    p.add_argument("--csv", help="write every question of every run to this CSV")
    p.add_argument("--json", help="write every question of every run to this JSON file")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="deltas from results file A to B")
    p.add_argument("--mixed-judges", action="store_true",
                   help="let --compare compare runs scored by different judges (their scales differ)")

    p = sub.add_parser("check", help="gold (100%%) and perturbation (0%%) checks on a throwaway cluster")
    _add_data(p)
    p.add_argument("--out", help="folder for the results files (default: a new temporary folder)")
    p.add_argument("--parallel", type=int, default=2, help="concurrent sessions (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0, help="statement_timeout, seconds")
    _add_policy(p)

    p = sub.add_parser("judge", help="one judge's verdicts on answer pairs: JUDGE <row> exact=.. subset=..")
    _add_data(p)
    p.add_argument("--cases", required=True,
                   help="CSV with columns db_name, question, gold, answer [, query_category]")
    _add_judge(p, default=None)
    p.add_argument("--dsn", help="a server that already has the databases (default: load them from --data "
                                 "into a throwaway cluster)")
    p.add_argument("--timeout", type=float, default=10.0, help="statement_timeout, seconds")
    return parser


def _cmd_load(args: argparse.Namespace) -> int:
    from .load import LoadError, load_database

    settings = dict(args.config)
    dataset = Dataset(resolve_data_dir(args.data))
    for db in dataset.databases(args.db):
        try:
            result = load_database(args.dsn, db, extension=not args.no_extension, replace=args.replace,
                                   settings=settings, glossary=args.glossary)
        except LoadError as e:
            print(f"sqlcoder-eval load: {e}", file=sys.stderr)
            return 1
        print(f"{db.name}: loaded; " + "; ".join(result.notes))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .report import format_by_file, format_table, summarize

    # With --questions, the data folder is not needed: the databases are already loaded.
    root = resolve_data_dir(args.data) if (args.data or not args.questions) else Path(args.questions[0]).parent
    dataset = Dataset(root, args.questions)
    questions = [q for q in dataset.questions()
                 if (not args.category or q.category in args.category) and (not args.db or q.db_name in args.db)]
    questions = questions[: args.limit] if args.limit else questions
    if args.data:
        # sql-eval's files also ask about databases a data folder may not have (the shared folder has 7
        # of 11): those questions are left out by name rather than failing one by one.
        known = set(dataset.database_names())
        absent = sorted({q.db_name for q in questions} - known)
        if absent:
            left = [q for q in questions if q.db_name in absent]
            print(f"sqlcoder-eval run: {len(left)} questions left out, their databases are not in {root}: "
                  + ", ".join(absent), file=sys.stderr)
            questions = [q for q in questions if q.db_name in known]
    if args.prompt_profile:
        from .profiles import ProfileError, apply_profile

        try:
            print(apply_profile(args.dsn, sorted({q.db_name for q in questions}), args.prompt_profile),
                  file=sys.stderr)
        except ProfileError as e:
            print(f"sqlcoder-eval run: {e}", file=sys.stderr)
            return 2
    opts = RunOptions(prompt_profile=args.prompt_profile or "", conninfo=args.dsn,
                      run_name=args.run_name or args.predictions, parallel=args.parallel,
                      timeout_s=args.timeout, max_rows=args.max_rows, policy=args.order_policy,
                      judges=(args.judge,), resume=args.resume, progress=not args.no_progress)
    records = run(questions, make_predictor(args.predictions, args.ask_timeout), args.out, opts)
    print(format_table(list(summarize(records).values())))
    if by_file := format_by_file(records):
        print("\n" + by_file)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import MixedJudges, compare_runs, format_by_file, format_table, summarize, write_csv, write_json

    if args.compare:
        try:
            print(compare_runs(read_records(args.compare[0]), read_records(args.compare[1]), args.mixed_judges))
        except MixedJudges as e:
            print(f"sqlcoder-eval report: {e}", file=sys.stderr)
            return 2
        return 0
    if not args.results:
        print("sqlcoder-eval report: give results files, or --compare A B", file=sys.stderr)
        return 2
    records = [r for path in args.results for r in read_records(path)]
    print(format_table(list(summarize(records).values())))
    if by_file := format_by_file(records):
        print("\n" + by_file)
    if args.csv:
        write_csv(records, args.csv)
    if args.json:
        write_json(records, args.json)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from .check import run_checks

    data = resolve_data_dir(args.data)
    return run_checks(data, Path(args.out) if args.out else None, args.parallel, args.timeout, args.order_policy)


def _cmd_judge(args: argparse.Namespace) -> int:
    from .judge_cmd import run_judge

    data = resolve_data_dir(args.data) if (args.data or args.dsn is None) else None
    return run_judge(args.cases, args.judge, data, args.dsn, args.timeout)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"load": _cmd_load, "run": _cmd_run, "report": _cmd_report, "check": _cmd_check,
                "judge": _cmd_judge}
    try:
        status = commands[args.command](args)
        sys.stdout.flush()  # inside the try: a reader that left (`| head`) is noticed here at the latest
        return status
    except BrokenPipeError:
        # The reader of stdout has gone (`sqlcoder-eval report ... | head`): stop quietly, as
        # cat or grep do. Point stdout at /dev/null so the interpreter's last flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command the signal ended
    except (FileNotFoundError, ValueError) as e:  # a missing folder, a file without the expected columns
        print(f"sqlcoder-eval: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sqlcoder-eval: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
