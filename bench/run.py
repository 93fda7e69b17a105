"""`make bench`: every benchmark of issue 19, several times, on the test servers, with the
Celery baseline in the same invocation; then the record of the run.

    .venv/bin/python bench/run.py [--reps 3] [--quick] [--only throughput,dispatch] [--strict]

Repetitions are interleaved (repetition 1 of every benchmark, then repetition 2, …) so that
a noisy spell of the machine spreads over Swarm and its baselines alike. A benchmark that
fails is recorded with its error and the run goes on; a benchmark whose module is missing is
skipped with a line saying so. Writes, under bench/results/:

- `<date>.json`: the machine, the options, every repetition's figures and time, each
  figure's median/min/max, each target's ratio and whether it is met;
- `<date>.md`: the table (also printed) and the machine;
- `<date>-figures.png`, `<date>-margins.png`: the plots (`plots.py`).

A `--quick` run (small sizes, for developing) is written as `<date>-quick.*`, a run of some
benchmarks only as `<date>-<names>.*`; only a full run replaces the results section of
bench/README.md (unless `--no-readme`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import machine  # noqa: E402
import plots  # noqa: E402
from report import (  # noqa: E402
    Outcome,
    Runs,
    evaluate,
    markdown_table,
    record,
    runs_from,
    write_json,
)
from targets import BENCHMARKS, TARGETS, Benchmark, needed  # noqa: E402

RESULTS = HERE / "results"
README = HERE / "README.md"
START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"

Once = Callable[[bool], dict[str, float]]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    names = [n.strip() for part in args.only for n in part.split(",") if n.strip()]
    try:
        selected = needed(names) if names else [b.name for b in BENCHMARKS]
    except ValueError as exc:
        _say(str(exc))
        return 2
    if args.render is not None:
        old = json.loads(args.render.read_text())
        stem = args.render.stem
        results = runs_from(old)
        selected = list(results)
        host, options = old["machine"], old["options"]
        started_at, elapsed_s = old["started_at"], old["elapsed_s"]
        full = not options["quick"] and not options["only"]
    else:
        full = not args.quick and not names
        stem = datetime.now().strftime("%Y-%m-%d") + ("-quick" if args.quick else "")
        if names:
            stem += "-" + "+".join(selected)
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        began = time.monotonic()
        host = machine.describe()
        quick = " quick" if args.quick else ""
        _say(f"bench: {', '.join(selected)}; {args.reps} repetition(s){quick}")
        _say(f"machine: {machine.summary(host)}")
        results = _run_all(selected, reps=args.reps, quick=args.quick)
        options = {"reps": args.reps, "quick": args.quick, "only": selected if names else None}
        elapsed_s = time.monotonic() - began
    outcomes = [evaluate(t, results) for t in TARGETS if t.swarm.benchmark in selected]
    table = markdown_table(outcomes, results)
    data = record(
        results=results,
        outcomes=outcomes,
        machine=host,
        options=options,
        started_at=started_at,
        elapsed_s=elapsed_s,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{stem}.json", data)
    images = _plot(outcomes, args.out, stem, started_at)
    (args.out / f"{stem}.md").write_text(_markdown(stem, table, data, images, prefix=""))
    if args.readme if args.readme is not None else full:
        prefix = (
            f"{args.out.resolve().relative_to(HERE)}/"
            if args.out.resolve().is_relative_to(HERE)
            else f"{args.out.resolve()}/"
        )
        _update_readme(_markdown(stem, table, data, images, prefix=prefix))
    sys.stdout.write("\n" + table)
    _say(
        f"\n{data['met']} target(s) met, {data['missed']} missed, {data['unknown']} without a "
        f"figure; {data['elapsed_s']:.0f} s; written: {args.out / stem}.{{json,md}} and plots"
    )
    failed = any(r.errors for r in results.values())
    missed = data["missed"] or data["unknown"]
    return 1 if failed or (args.strict and missed) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run the benchmarks of issue 19 and write bench/results/ (bench/README.md)."
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each benchmark")
    parser.add_argument("--quick", action="store_true", help="small sizes, for developing")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAMES",
        help="benchmarks to run, comma-separated (those their targets compare against come "
        f"along): {', '.join(b.name for b in BENCHMARKS)}",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="run nothing: write the table, report and plots again from a recorded run",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is missed or has no figure"
    )
    parser.add_argument(
        "--readme",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="replace the results section of bench/README.md (default: on a full run only)",
    )
    return parser


def _run_all(selected: list[str], *, reps: int, quick: bool) -> dict[str, Runs]:
    benches = [b for b in BENCHMARKS if b.name in selected]
    results = {b.name: Runs(name=b.name, title=b.title) for b in benches}
    loaded: dict[str, Once] = {}
    for b in benches:
        found = _load(b)
        if isinstance(found, str):
            results[b.name].skipped = found
            _say(f"skip {b.name}: {found}")
        else:
            loaded[b.name] = found
    try:
        for rep in range(1, reps + 1):
            for b in benches:
                if b.name in loaded:
                    _repeat(b, loaded[b.name], results[b.name], rep=rep, reps=reps, quick=quick)
    except KeyboardInterrupt:
        _say("interrupted: writing down what was measured so far")
    return results


def _load(bench: Benchmark) -> Once | str:
    """The module's `once`, or why there is none."""
    try:
        module = importlib.import_module(bench.module)
    except ModuleNotFoundError as exc:
        if exc.name != bench.module:
            raise
        by = f", to be written by {bench.owner}" if bench.owner else ""
        return f"bench/{bench.module}.py is missing{by}"
    once = getattr(module, "once", None)
    if once is None:
        return f"bench/{bench.module}.py has no once(quick)"
    return once  # type: ignore[no-any-return]


def _repeat(bench: Benchmark, once: Once, runs: Runs, *, rep: int, reps: int, quick: bool) -> None:
    _say(f"[{rep}/{reps}] {bench.name}: {bench.title} …")
    began = time.monotonic()
    try:
        figures = once(quick)
        clean = {str(k): float(v) for k, v in figures.items()}
    except Exception as exc:  # a failed benchmark is recorded; the others still run
        seconds = time.monotonic() - began
        last = traceback.format_exception(exc)[-1].strip()
        runs.errors.append(f"repetition {rep}: {last}")
        runs.seconds.append(seconds)
        _say(f"[{rep}/{reps}] {bench.name} FAILED after {seconds:.0f} s: {last}")
        _say(traceback.format_exc(limit=6))
        return
    seconds = time.monotonic() - began
    runs.runs.append(clean)
    runs.seconds.append(seconds)
    shown = ", ".join(f"{k}={_short(v)}" for k, v in clean.items())
    _say(f"[{rep}/{reps}] {bench.name}: {seconds:.0f} s; {shown}")


def _short(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4g}"


def _plot(outcomes: list[Outcome], out: Path, stem: str, when: str) -> list[Path]:
    title = f"Swarm bench {when} (median, min–max)"
    made = [
        plots.plot_figures(outcomes, out / f"{stem}-figures.png", title),
        plots.plot_margins(outcomes, out / f"{stem}-margins.png", title),
    ]
    return [p for p in made if p is not None]


def _markdown(
    stem: str, table: str, data: dict[str, Any], images: list[Path], *, prefix: str
) -> str:
    """The report; `prefix` leads from where it is read to the results folder."""
    options = data["options"]
    lines = [
        f"## Results of {data['started_at']}",
        "",
        f"{options['reps']} repetition(s)"
        f"{' at quick sizes (the titles give the full sizes)' if options['quick'] else ''}"
        f"{', only ' + ', '.join(options['only']) if options['only'] else ''}; "
        f"{data['elapsed_s']:.0f} s in all; every repetition's figures in "
        f"[`{stem}.json`]({prefix}{stem}.json).",
        "",
        f"Machine: {machine.summary(data['machine'])}.",
        "",
        table,
    ]
    errors = [
        f"- {name}: {error}"
        for name, bench in data["benchmarks"].items()
        for error in [*bench["errors"], *([bench["skipped"]] if bench["skipped"] else [])]
    ]
    if errors:
        lines += ["Failed or skipped:", "", *errors, ""]
    lines += [f"![{p.stem}]({prefix}{p.name})" for p in images]
    return "\n".join(lines) + "\n"


def _update_readme(report: str) -> None:
    text = README.read_text() if README.exists() else ""
    if START not in text or END not in text:
        _say(f"bench/README.md has no {START} … {END} section: not updated")
        return
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{report}{END}{tail}")
    _say("bench/README.md: results section replaced")


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
