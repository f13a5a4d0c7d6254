"""See before spending: the fully resolved params of a params file or of every sweep point.

`flan-nb resolve PARAMS.yaml [--json]` and `flan-nb sweep SWEEP --dry-run [--json]` print what
each notebook would run with (its parameters-cell defaults, the file's section, the evaluation
protocol's values) without running anything, and name every value that departs from the protocol.

JSON shapes: resolve -> {"notebooks": {notebook: {param: value}}}; dry run -> a list of
{"label": point label, "params": {"notebooks": ...}} in grid order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from flan_nb import config, pipeline
from flan_nb.eval import protocols


def resolve_file(params_file: str | os.PathLike[str]) -> dict[str, Any]:
    """{"notebooks": {notebook: resolved params}} of a params file (config.ParamsError if bad)."""
    params = config.load_params_file(params_file)
    return {"notebooks": pipeline.resolve(params, str(params_file))["notebooks"]}


def sweep_points(sweep_file: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """[{"label", "params": {"notebooks": ...}}] of every grid point of a sweep file (resolved as
    the runner would; nothing is written or run)."""
    from flan_nb.report import sweeps

    sweep = sweeps.load_sweep(sweep_file)
    out = []
    for point in sweeps.expand(sweep, hash_fn=lambda params, where: ""):
        resolved = pipeline.resolve(point.params, f"{sweep.file} (point {point.label})")
        out.append({"label": point.label, "params": {"notebooks": resolved["notebooks"]}})
    return out


def _section_text(notebook: str, values: Mapping[str, Any]) -> list[str]:
    head = notebook
    if "protocol" in values:
        rec = protocols.record(values)
        diffs = ", ".join(f"{k} {v['protocol']!r} -> {v['used']!r}"
                          for k, v in rec["protocol_overrides"].items())
        head += f"  [protocol {rec['protocol']}" + (f"; overrides: {diffs}]" if diffs else "]")
    return [head] + [f"    {k}: {json.dumps(v)}" for k, v in values.items()]


def format_resolved(resolved: Mapping[str, Any], indent: str = "") -> str:
    """Readable text of {"notebooks": ...}: one block per notebook, protocol and overrides first."""
    lines: list[str] = []
    for notebook, values in (resolved.get("notebooks") or {}).items():
        lines += [indent + line for line in _section_text(notebook, values)]
    return "\n".join(lines)


def main(target: str, *, sweep: bool, as_json: bool) -> int:
    """What cli.py runs for `resolve` and `sweep --dry-run`; returns the exit code."""
    try:
        result: Any = sweep_points(target) if sweep else resolve_file(target)
    except (config.ParamsError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    if as_json:
        print(json.dumps(result, indent=1, default=str))
    elif sweep:
        for point in result:
            print(f"point {point['label']}")
            print(format_resolved(point["params"], indent="  "))
    else:
        print(format_resolved(result))
    return 0
