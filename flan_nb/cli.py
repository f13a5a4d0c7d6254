"""`flan-nb` command line: run a params file, list and show runs, sweep, compare."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flan_nb import config, runs


def _cmd_run(args: argparse.Namespace) -> int:
    from flan_nb import pipeline

    try:
        run_dir = pipeline.run(args.params, results_root=args.results, only=args.only,
                               resume=args.resume, progress=not args.no_progress,
                               amend=args.amend)
    except config.ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except pipeline.PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"results: {run_dir}")
    info = runs.load_run(run_dir)
    print(_headline_table([info]))
    if "normalized_average" in info.metrics:
        print(f"normalized average: {info.metrics['normalized_average'].get('value')}")
    return 0


def _fmt(value: object) -> str:
    return "-" if value is None else (f"{value:.1f}" if isinstance(value, float) else str(value))


def _headline_table(infos: list[runs.RunInfo]) -> str:
    cols = ["norm_avg", *[f"{b}_{s}" for b, s in runs.HEADLINE]]
    header = ["run_id", "status", *cols]
    rows = [[i.run_id, i.status, _fmt(i.normalized_average),
             *[_fmt(i.headline.get(c)) for c in cols[1:]]] for i in infos]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in [header, *rows]]
    return "\n".join(lines)


def _cmd_runs(args: argparse.Namespace) -> int:
    infos = runs.list_runs(args.results)
    if infos:
        runs.try_rebuild_index(args.results)  # derived data: rebuilt on demand
    if not infos:
        print(f"no runs under {runs.results_root(args.results)}")
        return 0
    print(_headline_table(infos))
    return 0


def _find_run(name: str, root: str | None) -> Path:
    try:
        return runs.find_run(name, root)
    except FileNotFoundError as exc:
        raise SystemExit(f"error: {exc}") from None


def _cmd_show(args: argparse.Namespace) -> int:
    path = _find_run(args.run, args.results)
    info = runs.load_run(path)
    print(f"run {info.run_id}  status {info.status}  experiment {info.experiment}")
    for nb, st in (info.manifest.get("notebooks") or {}).items():
        print(f"  {nb:18s} {st.get('status')} {st.get('seconds', '')}"
              + (f"  {st['error']}" if st.get("error") else ""))
    metrics = info.metrics
    for bench in ("mmlu", "bbh", "tydiqa", "mgsm"):
        section = metrics.get(bench)
        if not section:
            continue
        meta = section.get("meta", {})
        print(f"\n{bench}  (data: {meta.get('data')}, split: {meta.get('split')}, "
              f"subsampled: {meta.get('subsampled')}, model: {meta.get('model')})")
        for setting, res in section.items():
            if setting == "meta" or not isinstance(res, dict) or "score" not in res:
                continue
            strict = (f"  strict {_fmt(res['strict_score'])} (unparsed "
                      f"{res.get('strict_unparsed', 0)})" if "strict_score" in res else "")
            print(f"  {setting:8s} {_fmt(res['score']):>6s}  n={res.get('n')}  "
                  f"unparsed={res.get('unparsed', 0)}{strict}")
            if args.per_task:
                for sub, r in sorted((res.get("per_subtask") or {}).items()):
                    print(f"      {sub:40s} {_fmt(r.get('score')):>6s}  n={r.get('n')}")
    if "normalized_average" in metrics:
        print(f"\nnormalized average: {_fmt(metrics['normalized_average'].get('value'))}")
    for key in ("mixing", "train"):
        if key in metrics:
            brief = {k: v for k, v in metrics[key].items() if not isinstance(v, (dict, list))}
            print(f"\n{key}: {json.dumps(brief, default=str)}")
    return 0


def _cmd_resolve(args: argparse.Namespace) -> int:
    from flan_nb import preview

    return preview.main(args.params, sweep=False, as_json=args.json)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from flan_nb.report import sweeps

    if args.dry_run:
        from flan_nb import preview

        return preview.main(args.sweep, sweep=True, as_json=args.json)

    record = sweeps.run_sweep(args.sweep, results_root=args.results)
    print(f"sweep record: {record}")
    return 0


def _find_side(ref: str, root: str | None) -> Any:
    """RUN or RUN@LABEL: a run, or its labelled evaluation <run>/<label>/ (e.g. `before`)."""
    from flan_nb.report import before_after

    name, label = config.split_key(ref)
    try:
        return before_after.side(_find_run(name, root), label)
    except before_after.BeforeAfterError as exc:
        raise SystemExit(f"error: {ref}: {exc}") from None


def _cmd_compare(args: argparse.Namespace) -> int:
    from flan_nb.report import compare

    result = compare.compare_runs(_find_side(args.run_a, args.results),
                                  _find_side(args.run_b, args.results))
    print(result.text())
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    import json

    from flan_nb import config
    from flan_nb.data import template_audit

    report = template_audit.audit(config.data_root(args.data_root or ""))
    print(json.dumps(report, indent=1) if args.json else template_audit.audit_table(report).to_string())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flan-nb", description=__doc__)
    parser.add_argument("--results", default=None,
                        help="results root (default: ./results or $FLAN_NB_RESULTS)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="execute a params file's notebooks into results/<run-id>/")
    p.add_argument("params", nargs="?", default=None,
                   help="params YAML (optional with --resume: the run's own params file)")
    p.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="run only these notebooks")
    p.add_argument("--resume", metavar="RUN",
                   help="continue this run: keep its complete notebooks, rerun the rest "
                        "(training resumes from its last checkpoint)")
    p.add_argument("--amend", action="store_true",
                   help="with --resume: the params of notebooks that have not completed may have "
                        "changed (e.g. a smaller stated subsample); recorded in the manifest")
    p.add_argument("--no-progress", action="store_true",
                   help="do not stream the notebooks' progress bars")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("runs", help="list runs with status and headline metrics")
    p.set_defaults(func=_cmd_runs)
    p = sub.add_parser("show", help="print a run's metrics tables")
    p.add_argument("run", help="run id, a unique part of it, or a run directory")
    p.add_argument("--per-task", action="store_true", help="also print per-subtask scores")
    p.set_defaults(func=_cmd_show)
    p = sub.add_parser("sweep", help="run a sweep file's grid of pipeline runs")
    p.add_argument("sweep")
    p.add_argument("--dry-run", action="store_true",
                   help="print every point's resolved params (protocol included); run nothing")
    p.add_argument("--json", action="store_true", help="with --dry-run: JSON list of points")
    p.set_defaults(func=_cmd_sweep)
    p = sub.add_parser("resolve", help="print every notebook's fully resolved params; run nothing")
    p.add_argument("params")
    p.add_argument("--json", action="store_true", help='JSON {"notebooks": {name: {param: value}}}')
    p.set_defaults(func=_cmd_resolve)
    p = sub.add_parser("compare", help="per-benchmark differences between two runs (B - A); "
                       "RUN@before names a run's labelled evaluation")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.set_defaults(func=_cmd_compare)
    p = sub.add_parser("audit-templates", help="templates per task, instruction and CoT-cue fractions, "
                       "duplicates, missing tasks")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--data-root", default="", help="offline mirror (default: $FLAN_NB_DATA)")
    p.set_defaults(func=_cmd_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
