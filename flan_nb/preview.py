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


def _meaning(notebook: str, key: str, value: Any, values: Mapping[str, Any],
             trained_model: str) -> str:
    """What an eval notebook's "use the default" value stands for, said next to it: the values
    that only the model or the data source fix (they are recorded in the run's meta)."""
    from flan_nb.eval import benchmark_schema

    base, _ = config.split_key(notebook)  # "04_eval_bbh@before" evaluates BBH too
    bench = base.split("_eval_")[-1] if "_eval_" in base else ""
    model = values.get("model") or trained_model
    if key == "model" and value == "":
        return f"this run's 02_finetune checkpoint ({trained_model or 'trained here'})"
    if key == "max_context" and value == 0:
        from flan_nb import models

        t5 = "t5" in model.lower()  # a name check: the config is only read when the model loads
        return (f"the model's real context: {models.T5_DEFAULT_MAX_CONTEXT:,} (T5 family, "
                "relative positions)" if t5 else
                "the model's real context: its config's max_position_embeddings")
    if key == "max_new_tokens_direct" and value == 0 and bench:
        direct = benchmark_schema.settings()[bench]["settings"].get("direct")
        return f"the benchmark default: {direct['max_new_tokens']}" if direct else ""
    if key == "split" and value == "" and bench == "mmlu":
        return {"hub": "validation (the paper's split)",
                "offline": "test: the offline mirror has no validation split"}.get(
                    str(values.get("data")), "test (the synthetic sets)")
    return ""


def _section_text(notebook: str, values: Mapping[str, Any], trained_model: str = "") -> list[str]:
    head = notebook
    if "protocol" in values:
        rec = protocols.record(values)
        diffs = ", ".join(f"{k} {v['protocol']!r} -> {v['used']!r}"
                          for k, v in rec["protocol_overrides"].items())
        head += f"  [protocol {rec['protocol']}" + (f"; overrides: {diffs}]" if diffs else "]")
    lines = [head]
    for k, v in values.items():
        note = _meaning(notebook, k, v, values, trained_model) if "protocol" in values else ""
        lines.append(f"    {k}: {json.dumps(v)}" + (f"   # = {note}" if note else ""))
    return lines


def format_resolved(resolved: Mapping[str, Any], indent: str = "") -> str:
    """Readable text of {"notebooks": ...}: one block per notebook, protocol and overrides first;
    a default that only the model or the data fixes (`max_context: 0`, `split: ""`) is followed
    by what it stands for."""
    notebooks = resolved.get("notebooks") or {}
    trained = str((notebooks.get("02_finetune") or {}).get("model", ""))
    lines: list[str] = []
    for notebook, values in notebooks.items():
        lines += [indent + line for line in _section_text(notebook, values, trained)]
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
