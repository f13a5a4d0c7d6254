"""Examples-proportional mixing with per-collection caps, then collection rates (paper App. E).

Within a collection every task is weighted by min(#examples, cap) (Muffin 30k, T0-SF 20k,
CoT 100k, NIV2 5k); collections are then weighted by their rates (Table 23 proportions A/B, the
released Flan 2022 weights, or custom). The mixture has `num_examples` rows: per-task counts are a
multinomial draw of that size (so realized proportions match planned ones within sampling error),
each task's examples are taken in a seeded permutation (cycled when a task is smaller than its
count, reported as epochs), rows are interleaved by a seeded shuffle and rendered with the task's
template set in a sampled format (zs/fs x opt/noopt, CoT or not).

Presets are data: `flan_nb/resources/mixtures/<name>.yaml`. Output is an Arrow dataset written
shard by shard (bounded memory) plus `manifest.json`; the same params give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flan_nb.data import fewshot, mixture_size
from flan_nb.data import registry as registry_mod
from flan_nb.data.formats import FormatRatios, Renderer
from flan_nb.data.mixture_io import MixingError, sha256_files, write_arrow
from flan_nb.data.mixture_plan import (  # noqa: F401  (re-exported: mixing is the public entry)
    DEFAULT_CAPS,
    PRESET_DIR,
    Preset,
    available_presets,
    check_missing,
    draw_counts,
    load_preset,
    missing_data,
    niv2_mmlu_filter,
    normalize_rates,
    plan,
    select_tasks,
)
from flan_nb.data.registry import COLLECTIONS, Task

MIXTURE_COLUMNS = ("inputs", "targets", "task", "collection", "format", "cot", "template_id", "example_id")


# ---------------------------------------------------------------------------------------------
# Parameters (notebook 01) and presets


@dataclass(frozen=True)
class MixingParams:
    """The parameters cell of notebooks/01_data_mixing.ipynb (no defaults: the notebook has them)."""

    seed: int
    preset: str
    num_examples: int | str  # a count, or "auto" (mixture_size: sized from the training budget)
    rates: dict[str, float]
    caps: dict[str, int]
    fs_fraction: float
    opt_fraction: float
    cot_fraction: float
    max_exemplars: int
    max_input_tokens: int
    fill_fraction: float
    tokenizer: str
    allow_missing: bool
    synthetic_examples_per_family: int
    max_examples_per_task: int
    contamination: bool
    workers: int
    data_root: str
    run_dir: str
    params_file: str
    on_bad_rows: str = "skip"  # skip (counted in metrics mixing.bad_rows) | raise



# ---------------------------------------------------------------------------------------------
# The whole mixture


@dataclass
class TaskData:
    task: Task
    rows: Sequence[Mapping[str, Any]]  # raw examples (a list of dicts)


def _length_stats(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {"n": int(a.size), "mean": round(float(a.mean()), 2), "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)), "max": int(a.max())}


CHUNK = 20_000  # rows rendered with one RNG; the unit of work for parallel rendering
_WORK: dict[str, Any] = {}  # read-only state shared with forked workers


def _render_chunk(chunk: int) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Render rows [chunk*CHUNK, (chunk+1)*CHUNK) of the interleaved order.

    Each chunk has its own RNG seeded by (seed, chunk), so the output is the same whether chunks
    run in this process or in any number of workers.
    """
    w = _WORK
    names, labels, by_id, perms, renderer = w["names"], w["labels"], w["by_id"], w["perms"], w["renderer"]
    lo, hi = chunk * CHUNK, min((chunk + 1) * CHUNK, len(labels))
    cursors = w["starts"][chunk].tolist()
    rng = random.Random(f"flan_nb-mix-{w['seed']}-{chunk}")
    # plain lists in the hot loop: numpy scalar indexing and Counter updates cost more than the
    # rendering bookkeeping itself; counts are taken once per chunk at the end
    inputs_col: list[str] = []
    targets_col: list[str] = []
    task_col: list[str] = []
    coll_col: list[str] = []
    fmt_col: list[str] = []
    cot_col: list[bool] = []
    tid_col: list[str] = []
    eid_col: list[str] = []
    keys: list[str] = []
    in_lens: list[int] = []
    out_lens: list[int] = []
    samples: dict[str, dict[str, Any]] = {}
    every = w["hist_every"]
    render = renderer.render
    listed_before = dict(renderer.options_already_listed)
    count = renderer.counter.count
    for pos, label in enumerate(labels[lo:hi].tolist(), start=lo):
        name = names[label]
        td = by_id[name]
        perm = perms[name]
        index = perm[cursors[label] % len(perm)]
        cursors[label] += 1
        inputs, targets, tid, fmt, cot = render(td.task, index, td.rows, rng)
        key = fmt + "+cot" if cot else fmt
        keys.append(key)
        if pos % every == 0:
            in_lens.append(count(inputs))
            out_lens.append(count(targets))
        if key not in samples:
            samples[key] = {"task": name, "inputs": inputs, "targets": targets, "template_id": tid}
        inputs_col.append(inputs)
        targets_col.append(targets)
        task_col.append(name)
        coll_col.append(td.task.collection)
        fmt_col.append(fmt)
        cot_col.append(bool(cot))
        tid_col.append(tid)
        eid_col.append(str(td.rows[index]["example_id"]))
    cols = {"inputs": inputs_col, "targets": targets_col, "task": task_col, "collection": coll_col,
            "format": fmt_col, "cot": cot_col, "template_id": tid_col, "example_id": eid_col}
    fmt_counts = Counter(keys)
    coll_formats: dict[str, Counter[str]] = defaultdict(Counter)
    for (c, k), v in Counter(zip(coll_col, keys, strict=True)).items():
        coll_formats[c][k] = v
    listed = {t: n - listed_before.get(t, 0) for t, n in renderer.options_already_listed.items()
              if n > listed_before.get(t, 0)}
    stats = {"formats": fmt_counts, "by_collection": coll_formats, "in": in_lens, "out": out_lens,
             "samples": samples, "options_already_listed": listed}
    return cols, stats


def _check_inputs(task_data: Sequence[TaskData], caps: Mapping[str, int], num_examples: int,
                  workers: int) -> None:
    if num_examples <= 0:
        raise MixingError(f"num_examples must be > 0, got {num_examples}")
    if workers < 1:
        raise MixingError(f"workers must be >= 1, got {workers}")
    for td in task_data:
        if td.task.held_out:
            raise MixingError(f"task {td.task.id} is held out and can never be in a mixture")
        if td.task.collection not in caps:
            raise MixingError(f"no cap for collection {td.task.collection!r}; caps: {dict(caps)}")


def _interleave(counts: Mapping[str, int], sizes: Mapping[str, int], num_examples: int,
                seed: int) -> dict[str, Any]:
    """Task labels repeated by their counts and shuffled once, each task's example permutation,
    and every task's cursor at each chunk start (so chunks render independently)."""
    names = sorted(counts)
    labels = np.repeat(np.arange(len(names), dtype=np.int32), [counts[n] for n in names])
    np.random.default_rng([seed, 2]).shuffle(labels)
    perms = {n: np.random.default_rng([seed, 3, i]).permutation(sizes[n]).tolist()
             for i, n in enumerate(names) if counts[n]}
    n_chunks = math.ceil(num_examples / CHUNK)
    starts = np.zeros((n_chunks, len(names)), dtype=np.int64)
    for c in range(1, n_chunks):
        starts[c] = starts[c - 1] + np.bincount(labels[(c - 1) * CHUNK: c * CHUNK], minlength=len(names))
    return {"names": names, "labels": labels, "perms": perms, "starts": starts, "n_chunks": n_chunks}


def _render_all(order: Mapping[str, Any], by_id: Mapping[str, TaskData], renderer: Renderer, *,
                seed: int, num_examples: int, out_dir: Path, workers: int, progress: bool,
                histogram_sample: int) -> tuple[list[Path], dict[str, Any]]:
    """Render every chunk (here or in forked workers) and write the shards; merged chunk stats."""
    _WORK.clear()
    _WORK.update(names=order["names"], labels=order["labels"], by_id=by_id, perms=order["perms"],
                 renderer=renderer, seed=seed, starts=order["starts"],
                 hist_every=max(1, num_examples // histogram_sample))
    acc: dict[str, Any] = {"formats": Counter(), "by_collection": defaultdict(Counter), "in": [], "out": [],
                           "samples": {}, "options_already_listed": Counter()}

    def merged(results: Iterable[tuple[dict[str, list[Any]], dict[str, Any]]]) -> Iterator[dict[str, list[Any]]]:
        for cols, stats in results:
            acc["formats"].update(stats["formats"])
            for c, fm in stats["by_collection"].items():
                acc["by_collection"][c].update(fm)
            acc["in"].extend(stats["in"])
            acc["out"].extend(stats["out"])
            for k, v in stats["samples"].items():
                acc["samples"].setdefault(k, v)
            acc["options_already_listed"].update(stats["options_already_listed"])
            yield cols

    chunks = range(order["n_chunks"])
    try:
        if workers == 1:
            paths = write_arrow(merged(map(_render_chunk, chunks)), out_dir, total=num_examples,
                                shard_size=10 * CHUNK, progress=progress)
        else:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(workers) as pool:
                paths = write_arrow(merged(pool.imap(_render_chunk, chunks)), out_dir,
                                    total=num_examples, shard_size=10 * CHUNK, progress=progress)
    finally:
        _WORK.clear()
    return paths, acc


def _per_task_and_collection(counts: Mapping[str, int], sizes: Mapping[str, int], coll_of: Mapping[str, str],
                             planned: Mapping[str, Any], rates: Mapping[str, float],
                             num_examples: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Manifest rows: per task (available, capped, planned, realized, epochs) and per collection,
    with `expected_passes` = realized rows / capped pool (> 1 means examples are repeated)."""
    names = sorted(counts)
    per_task = {n: {"collection": coll_of[n], "available": sizes[n], "capped": planned["capped"][n],
                    "planned": round(planned["expected"][n], 3), "realized": counts[n],
                    "epochs": round(counts[n] / sizes[n], 3) if sizes[n] else None} for n in names}
    per_coll: dict[str, dict[str, Any]] = {}
    for c in sorted(set(coll_of.values()) | set(rates)):
        mine = [n for n in names if coll_of[n] == c]
        realized = sum(counts[n] for n in mine)
        pool = sum(planned["capped"][n] for n in mine)
        per_coll[c] = {"tasks": len(mine), "rate_requested": rates.get(c, 0.0),
                       "planned_fraction": planned["collection_rates"].get(c, 0.0),
                       "planned": round(planned["collection_rates"].get(c, 0.0) * num_examples, 3),
                       "realized": realized, "realized_fraction": realized / num_examples,
                       "capped_pool": pool, "expected_passes": round(realized / pool, 4) if pool else None}
    return per_task, per_coll


def mix(task_data: Sequence[TaskData], *, rates: Mapping[str, float], caps: Mapping[str, int],
        num_examples: int, seed: int, ratios: FormatRatios, out_dir: Path, workers: int = 1,
        progress: bool = True, histogram_sample: int = 20000,
        extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the mixture of `task_data` to `out_dir`; return the manifest (also written there),
    with `extra` (the caller's provenance: preset, hygiene, loading) merged in.

    `workers` > 1 renders chunks in forked processes; the bytes written do not depend on it.
    Lengths in the manifest count `ratios.tokenizer` units (`token_unit` names them).
    """
    _check_inputs(task_data, caps, num_examples, workers)
    by_id = {td.task.id: td for td in task_data}
    sizes = {tid: len(td.rows) for tid, td in by_id.items()}
    coll_of = {tid: td.task.collection for tid, td in by_id.items()}
    planned = plan(sizes, coll_of, rates, caps, num_examples)
    counts = draw_counts(planned["probs"], num_examples, seed)
    order = _interleave(counts, sizes, num_examples, seed)
    renderer = Renderer(ratios)
    # every set (and every fallback) is settled before any fork, so the manifest can read
    # renderer.fallbacks directly
    for td in task_data:
        renderer.template_set(td.task)
    paths, acc = _render_all(order, by_id, renderer, seed=seed, num_examples=num_examples, out_dir=out_dir,
                             workers=workers, progress=progress, histogram_sample=histogram_sample)
    per_task, per_coll = _per_task_and_collection(counts, sizes, coll_of, planned, rates, num_examples)
    plain: Counter[str] = Counter()
    cot_counts: Counter[str] = Counter()
    for key, v in acc["formats"].items():
        plain[key.removesuffix("+cot")] += v
        cot_counts[str(key.endswith("+cot"))] += v
    manifest = {
        "num_examples": num_examples, "seed": seed, "files": [p.name for p in paths],
        "fingerprint_sha256": sha256_files(paths), "per_collection": per_coll, "per_task": per_task,
        "missing_collections": planned["missing_collections"], "caps": dict(caps),
        "format_counts": dict(sorted(plain.items())), "cot_counts": dict(sorted(cot_counts.items())),
        "format_by_collection": {c: dict(sorted(v.items())) for c, v in sorted(acc["by_collection"].items())},
        "format_ratios": dataclasses.asdict(ratios), "token_unit": renderer.counter.unit,
        "input_length": _length_stats(acc["in"]), "target_length": _length_stats(acc["out"]),
        "length_samples": {"inputs": acc["in"][:5000], "targets": acc["out"][:5000]},
        "template_fallbacks": dict(sorted(renderer.fallbacks.items())),
        # T0-SF examples drawn *_opt but rendered *_noopt: the promptsource text lists the choices
        "options_already_listed": dict(sorted(acc["options_already_listed"].items())),
        "samples": dict(sorted(acc["samples"].items())), **(extra or {}),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    return manifest


# ---------------------------------------------------------------------------------------------
# Notebook step functions


def resolve(cfg: MixingParams) -> tuple[Preset, dict[str, float], dict[str, int]]:
    preset = load_preset(cfg.preset)
    if cfg.on_bad_rows not in ("raise", "skip"):
        raise MixingError(f"on_bad_rows must be 'raise' or 'skip', got {cfg.on_bad_rows!r}")
    if cfg.rates:
        rates = normalize_rates(dict(cfg.rates), where="rates")
    else:
        rates = normalize_rates(dict(preset.rates), where=f"preset {preset.name} rates", tolerance=0.002)
    caps = {**preset.caps, **{k: int(v) for k, v in (cfg.caps or {}).items()}}
    for k, v in caps.items():
        if k not in COLLECTIONS:
            raise registry_mod.unknown(k, COLLECTIONS, "collection in caps")
        if v <= 0:
            raise MixingError(f"caps[{k!r}] = {v} must be > 0")
    return preset, rates, caps


def load_task_data(tasks: Sequence[Task], data_root: Path | None, *, seed: int, synthetic_n: int,
                   max_examples_per_task: int, progress: bool = True, on_bad_rows: str = "skip"
                   ) -> tuple[list[TaskData], dict[str, Any]]:
    """Raw examples of each task (local files or synthetic), deduplicated by normalized input
    (fewshot.dedupe_rows, counted per task); tasks that cannot load are reported with the reason."""
    from tqdm.auto import tqdm

    from flan_nb.data import loaders as data

    out: list[TaskData] = []
    failed: dict[str, str] = {}
    dropped: dict[str, int] = {}
    stats: dict[str, Any] = {}
    for task in tqdm(tasks, desc="loading tasks", disable=not progress):
        try:
            ds = data.load_task(task, data_root, seed=seed, synthetic_size=synthetic_n,
                                max_examples=max_examples_per_task or None, on_bad_rows=on_bad_rows,
                                stats=stats)
        except (FileNotFoundError, NotImplementedError) as exc:
            failed[task.id] = str(exc)
            continue
        rows, n_dup = fewshot.dedupe_rows(ds.to_list())
        if n_dup:
            dropped[task.id] = n_dup
        if rows:
            out.append(TaskData(task, rows))
        else:
            failed[task.id] = "no examples"
    return out, {"failed_to_load": failed, "bad_rows": stats.get("bad_rows", 0),
                 "bad_examples": stats.get("bad_examples", []), "duplicates_dropped": dropped,
                 "duplicates_dropped_total": sum(dropped.values())}


def _num_examples(cfg: MixingParams, task_data: Sequence[TaskData], rates: Mapping[str, float],
                  caps: Mapping[str, int], ratios: FormatRatios) -> tuple[int, dict[str, Any] | None]:
    if cfg.num_examples == mixture_size.AUTO:
        sizing = mixture_size.auto_num_examples(task_data, rates=rates, caps=caps, ratios=ratios,
                                                seed=cfg.seed, params_file=cfg.params_file)
        return sizing["num_examples"], sizing
    if isinstance(cfg.num_examples, str):
        raise MixingError(f"num_examples must be a positive integer or {mixture_size.AUTO!r}, "
                          f"got {cfg.num_examples!r}")
    return int(cfg.num_examples), None


def build_mixture(cfg: MixingParams, run: Any, *, progress: bool = True) -> dict[str, Any]:
    """Notebook 01's one call: select tasks, load, check nothing is missing, size, mix, write under
    run.artifacts/'mixture'. Records `mixture_path` and writes the `mixing` metrics section.

    Raises MixingError listing every missing collection and task unless `allow_missing` (or the
    preset is `only_available`); the mixture is then marked partial. Returns the manifest.
    """
    from flan_nb import config

    preset, rates, caps = resolve(cfg)
    ratios = FormatRatios(cfg.fs_fraction, cfg.opt_fraction, cfg.cot_fraction, cfg.max_exemplars,
                          cfg.max_input_tokens, cfg.fill_fraction, cfg.tokenizer)
    root = config.data_root(cfg.data_root)
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"data_root {root} does not exist")
    if root is None and preset.only_available:
        raise FileNotFoundError(
            f"preset {preset.name!r} mixes what the offline mirror holds: set data_root (or "
            f"FLAN_NB_DATA) to the mirror, or use preset 'synthetic'")
    registry = registry_mod.load_registry()
    coll_of = {t.id: t.collection for t in registry.tasks.values()}
    if preset.exports:  # the authors' rendered exports: their own templates, nothing rendered here
        from flan_nb.data import flan_exports

        tasks, hygiene, pairs, load_report, export_colls = flan_exports.load_for_preset(
            preset, root, seed=cfg.seed, max_rows_per_task=cfg.max_examples_per_task or None,
            on_bad_rows=cfg.on_bad_rows)
        task_data = [TaskData(t, rows) for t, rows in pairs]
        coll_of.update(export_colls)
    else:
        tasks, hygiene = select_tasks(preset, registry, root)
        task_data, load_report = load_task_data(tasks, root, seed=cfg.seed,
                                                synthetic_n=cfg.synthetic_examples_per_family,
                                                max_examples_per_task=cfg.max_examples_per_task,
                                                progress=progress, on_bad_rows=cfg.on_bad_rows)
    missing = missing_data(preset.collections, rates, [td.task for td in task_data],
                           load_report["failed_to_load"], hygiene["unavailable_dropped"], coll_of)
    check_missing(missing, preset=preset.name, allow_missing=cfg.allow_missing or preset.only_available)
    if not task_data:
        raise MixingError(f"preset {preset.name!r}: none of its {len(tasks)} tasks could be loaded")
    if missing["partial"]:
        warnings.warn(f"preset {preset.name!r}: the mixture is PARTIAL ({len(missing['tasks'])} tasks, "
                      f"collections {sorted(missing['collections']) or 'none'} missing; see manifest['missing'])",
                      stacklevel=2)
    num_examples, sizing = _num_examples(cfg, task_data, rates, caps, ratios)
    out_dir = Path(run.artifacts) / "mixture"
    manifest = mix(task_data, rates=rates, caps=caps, num_examples=num_examples, seed=cfg.seed,
                   ratios=ratios, out_dir=out_dir, workers=cfg.workers, progress=progress,
                   extra={"preset": preset.name, "preset_notes": preset.notes, "hygiene": hygiene,
                          "loading": load_report, "tasks_selected": len(tasks), "tasks_mixed": len(task_data),
                          "partial": missing["partial"], "missing": missing, "sizing": sizing,
                          "duplicates_dropped": load_report["duplicates_dropped"]})
    run.record_output("mixture_path", str(out_dir))
    run.write_json("mixing/manifest.json", manifest)
    run.write_metrics("mixing", summary(manifest))
    return manifest


def summary(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The compact `mixing` section of metrics.json (`partial` marks a mixture missing data)."""
    return {
        "preset": manifest.get("preset"), "num_examples": manifest["num_examples"],
        "tasks_mixed": manifest.get("tasks_mixed", len(manifest["per_task"])),
        "fingerprint_sha256": manifest["fingerprint_sha256"],
        "partial": bool(manifest.get("partial", False)),
        "missing_tasks": len((manifest.get("missing") or {}).get("tasks", {})),
        "missing_collections": sorted((manifest.get("missing") or {}).get("collections", {})),
        "collections": {c: {"planned_fraction": round(v["planned_fraction"], 4),
                            "realized_fraction": round(v["realized_fraction"], 4), "tasks": v["tasks"],
                            "expected_passes": v.get("expected_passes")}
                        for c, v in manifest["per_collection"].items()},
        "format_counts": manifest["format_counts"],
        "input_length_mean": manifest["input_length"].get("mean"),
        "target_length_mean": manifest["target_length"].get("mean"),
        "token_unit": manifest["token_unit"],
        "duplicates_dropped": sum((manifest.get("duplicates_dropped") or {}).values()),
        "niv2_mmlu_dropped": (manifest.get("hygiene") or {}).get("niv2_mmlu_dropped_count", 0),
        # malformed source rows skipped under on_bad_rows: skip (first messages in the manifest)
        "bad_rows": (manifest.get("loading") or {}).get("bad_rows", 0),
    }
