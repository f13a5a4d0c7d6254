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

from flan_nb.data import registry as registry_mod
from flan_nb.data.formats import FormatRatios, Renderer
from flan_nb.data.mixture_io import MixingError, sha256_files, write_arrow
from flan_nb.data.registry import COLLECTIONS, Registry, Task

PRESET_DIR = Path(__file__).resolve().parents[1] / "resources" / "mixtures"
DEFAULT_CAPS = {"muffin": 30000, "t0sf": 20000, "cot": 100000, "niv2": 5000, "synthetic": 100000}
MIXTURE_COLUMNS = ("inputs", "targets", "task", "collection", "format", "cot", "template_id", "example_id")
TOKEN_UNIT = "whitespace-separated words"  # what the manifest's token-length stats count


# ---------------------------------------------------------------------------------------------
# Parameters (notebook 01) and presets


@dataclass(frozen=True)
class MixingParams:
    """The parameters cell of notebooks/01_data_mixing.ipynb (no defaults: the notebook has them)."""

    seed: int
    preset: str
    num_examples: int
    rates: dict[str, float]
    caps: dict[str, int]
    fs_fraction: float
    opt_fraction: float
    cot_fraction: float
    max_exemplars: int
    max_input_tokens: int
    synthetic_examples_per_family: int
    max_examples_per_task: int
    contamination: bool
    workers: int
    data_root: str
    run_dir: str
    params_file: str


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    collections: tuple[str, ...]
    rates: Mapping[str, float]
    caps: Mapping[str, int]
    niv2_first_n: int | None
    only_available: bool
    notes: str
    path: str


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> Preset:
    from flan_nb import yaml_io

    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise registry_mod.unknown(name, available_presets(), "mixture preset")
    doc = yaml_io.load_file(path)
    known = {"name", "description", "collections", "rates", "caps", "niv2_first_n", "only_available", "notes"}
    extra = set(doc) - known
    if extra:
        raise MixingError(f"{path}: unknown key(s) {sorted(extra)}; known: {sorted(known)}")
    if doc.get("name") != name:
        raise MixingError(f"{path}: name {doc.get('name')!r} must equal the file stem {name!r}")
    collections = tuple(doc["collections"])
    for c in collections:
        if c not in COLLECTIONS:
            raise registry_mod.unknown(c, COLLECTIONS, f"collection (in {path})")
    return Preset(name=name, description=doc.get("description", ""), collections=collections,
                  rates=dict(doc["rates"]), caps={**DEFAULT_CAPS, **(doc.get("caps") or {})},
                  niv2_first_n=doc.get("niv2_first_n"), only_available=bool(doc.get("only_available")),
                  notes=doc.get("notes", ""), path=str(path))


def normalize_rates(rates: Mapping[str, float], *, where: str = "rates", tolerance: float = 1e-6
                    ) -> dict[str, float]:
    """Rates as fractions summing to 1: negative -> error, other sums -> normalized + warning.

    Presets pass tolerance=0.002 because the paper's Proportion B is printed rounded and sums to
    99.9%; it is still normalized, only without the warning.
    """
    for key, value in rates.items():
        if key not in COLLECTIONS:
            raise registry_mod.unknown(key, COLLECTIONS, f"collection in {where}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            raise MixingError(f"{where}[{key!r}] must be a number, got {value!r}")
        if value < 0:
            raise MixingError(f"{where}[{key!r}] = {value} is negative; rates must be >= 0")
    total = float(sum(rates.values()))
    if total <= 0:
        raise MixingError(f"{where} sum to {total}; at least one rate must be positive")
    if not math.isclose(total, 1.0, rel_tol=0, abs_tol=tolerance):
        warnings.warn(f"{where} sum to {total:g}, not 1; normalized to "
                      f"{ {k: round(v / total, 4) for k, v in rates.items()} }", stacklevel=2)
    return {k: float(v) / total for k, v in rates.items()}


# ---------------------------------------------------------------------------------------------
# Task selection and held-out hygiene


def niv2_mmlu_filter(tasks: Iterable[Task]) -> tuple[list[Task], list[str]]:
    """Drop NIv2 tasks with ids 664-667 and 685-737 (FLAN's filter_mmlu_fn); return (kept, dropped).

    The paper (footnote 4) says 44 MMLU tasks were removed; the released metadata has 57 such ids.
    """
    kept, dropped = [], []
    for t in tasks:
        if t.collection == "niv2" and registry_mod.niv2_task_number(t.id) in registry_mod.NIV2_MMLU_IDS:
            dropped.append(t.id)
        else:
            kept.append(t)
    return kept, dropped


def select_tasks(preset: Preset, registry: Registry, data_root: Path | None) -> tuple[list[Task], dict[str, Any]]:
    """The preset's tasks after hygiene; the report says what was dropped and why."""
    chosen: list[Task] = []
    for c in preset.collections:
        tasks = registry.select(c, include_held_out=True)
        if c == "niv2" and preset.niv2_first_n is not None:
            tasks = sorted(tasks, key=lambda t: (registry_mod.niv2_task_number(t.id), t.id))
            tasks = [t for t in tasks if not t.held_out][: preset.niv2_first_n]
        chosen.extend(tasks)
    chosen, mmlu_dropped = niv2_mmlu_filter(chosen)
    held = [t.id for t in chosen if t.held_out]
    chosen = [t for t in chosen if not t.held_out]
    unavailable: list[str] = []
    if preset.only_available:
        cov = registry_mod.coverage(data_root, registry)
        ok = set(cov.loc[cov["available"], "id"])
        unavailable = [t.id for t in chosen if t.id not in ok]
        chosen = [t for t in chosen if t.id in ok]
    report = {"niv2_mmlu_dropped": mmlu_dropped, "niv2_mmlu_dropped_count": len(mmlu_dropped),
              "held_out_dropped": held, "unavailable_dropped_count": len(unavailable)}
    return chosen, report


# ---------------------------------------------------------------------------------------------
# Planning: exact arithmetic, no data needed


def plan(sizes: Mapping[str, int], collection_of: Mapping[str, str], rates: Mapping[str, float],
         caps: Mapping[str, int], num_examples: int) -> dict[str, Any]:
    """Planned per-task probabilities and expected counts.

    p(task) = rate[c] * min(n_t, cap_c) / sum_{t' in c} min(n_t', cap_c). Collections with a rate
    but no (non-empty) task lose their share, which the others absorb (renormalized, reported).
    """
    capped = {t: min(int(n), int(caps[collection_of[t]])) for t, n in sizes.items()}
    by_coll: dict[str, float] = defaultdict(float)
    for t, n in capped.items():
        by_coll[collection_of[t]] += n
    live = {c: r for c, r in rates.items() if r > 0 and by_coll.get(c, 0) > 0}
    missing = sorted(c for c, r in rates.items() if r > 0 and by_coll.get(c, 0) == 0)
    if not live:
        raise MixingError(f"no tasks with examples in any collection with a positive rate ({dict(rates)})")
    total = sum(live.values())
    coll_rate = {c: r / total for c, r in live.items()}
    probs = {t: coll_rate.get(collection_of[t], 0.0) * capped[t] / by_coll[collection_of[t]]
             if collection_of[t] in coll_rate else 0.0 for t in sizes}
    return {"capped": capped, "collection_rates": coll_rate, "missing_collections": missing,
            "probs": probs, "expected": {t: p * num_examples for t, p in probs.items()}}


def draw_counts(probs: Mapping[str, float], num_examples: int, seed: int) -> dict[str, int]:
    """A multinomial draw of num_examples over the tasks (sorted order, so the seed fixes it)."""
    names = sorted(probs)
    p = np.array([probs[n] for n in names], dtype=np.float64)
    p = p / p.sum()
    rng = np.random.default_rng([seed, 1])
    counts = rng.multinomial(num_examples, p)
    return {n: int(c) for n, c in zip(names, counts, strict=True)}


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
            in_lens.append(len(inputs.split()))
            out_lens.append(len(targets.split()))
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
    stats = {"formats": fmt_counts, "by_collection": coll_formats, "in": in_lens, "out": out_lens,
             "samples": samples}
    return cols, stats


def mix(task_data: Sequence[TaskData], *, rates: Mapping[str, float], caps: Mapping[str, int],
        num_examples: int, seed: int, ratios: FormatRatios, out_dir: Path, workers: int = 1,
        progress: bool = True, histogram_sample: int = 20000,
        extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the mixture of `task_data` to `out_dir`; return the manifest (also written there),
    with `extra` (the caller's provenance: preset, hygiene, loading) merged in.

    `workers` > 1 renders chunks in forked processes; the bytes written do not depend on it.
    """
    if num_examples <= 0:
        raise MixingError(f"num_examples must be > 0, got {num_examples}")
    if workers < 1:
        raise MixingError(f"workers must be >= 1, got {workers}")
    by_id = {td.task.id: td for td in task_data}
    for td in task_data:
        if td.task.held_out:
            raise MixingError(f"task {td.task.id} is held out and can never be in a mixture")
    sizes = {tid: len(td.rows) for tid, td in by_id.items()}
    coll_of = {tid: td.task.collection for tid, td in by_id.items()}
    for c in {*coll_of.values()}:
        if c not in caps:
            raise MixingError(f"no cap for collection {c!r}; caps: {dict(caps)}")
    planned = plan(sizes, coll_of, rates, caps, num_examples)
    counts = draw_counts(planned["probs"], num_examples, seed)

    # The interleaving order: task labels repeated by their counts, shuffled once.
    names = sorted(counts)
    labels = np.repeat(np.arange(len(names), dtype=np.int32), [counts[n] for n in names])
    np.random.default_rng([seed, 2]).shuffle(labels)
    perms = {n: np.random.default_rng([seed, 3, i]).permutation(sizes[n]).tolist()
             for i, n in enumerate(names) if counts[n]}
    n_chunks = math.ceil(num_examples / CHUNK)
    starts = np.zeros((n_chunks, len(names)), dtype=np.int64)  # per-task cursor at each chunk start
    for c in range(1, n_chunks):
        starts[c] = starts[c - 1] + np.bincount(labels[(c - 1) * CHUNK: c * CHUNK], minlength=len(names))
    renderer = Renderer(ratios)
    # every set (and every fallback) is settled here, before any fork, so the manifest can read
    # renderer.fallbacks directly
    for td in task_data:
        renderer.template_set(td.task)
    _WORK.clear()
    _WORK.update(names=names, labels=labels, by_id=by_id, perms=perms, renderer=renderer, seed=seed,
                 starts=starts, hist_every=max(1, num_examples // histogram_sample))
    fmt_counts: Counter[str] = Counter()
    coll_formats: dict[str, Counter[str]] = defaultdict(Counter)
    in_lens: list[int] = []
    out_lens: list[int] = []
    samples: dict[str, dict[str, Any]] = {}

    def merged(results: Iterable[tuple[dict[str, list[Any]], dict[str, Any]]]) -> Iterator[dict[str, list[Any]]]:
        for cols, stats in results:
            fmt_counts.update(stats["formats"])
            for c, fm in stats["by_collection"].items():
                coll_formats[c].update(fm)
            in_lens.extend(stats["in"])
            out_lens.extend(stats["out"])
            for k, v in stats["samples"].items():
                samples.setdefault(k, v)
            yield cols

    try:
        if workers == 1:
            paths = write_arrow(merged(map(_render_chunk, range(n_chunks))), out_dir,
                                total=num_examples, shard_size=10 * CHUNK, progress=progress)
        else:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(workers) as pool:
                paths = write_arrow(merged(pool.imap(_render_chunk, range(n_chunks))), out_dir,
                                    total=num_examples, shard_size=10 * CHUNK, progress=progress)
    finally:
        _WORK.clear()
    fingerprint = sha256_files(paths)
    per_task = {}
    for n in names:
        per_task[n] = {"collection": coll_of[n], "available": sizes[n], "capped": planned["capped"][n],
                       "planned": round(planned["expected"][n], 3), "realized": counts[n],
                       "epochs": round(counts[n] / sizes[n], 3) if sizes[n] else None}
    per_coll: dict[str, dict[str, Any]] = {}
    for c in sorted(set(coll_of.values()) | set(rates)):
        realized = sum(counts[n] for n in names if coll_of[n] == c)
        per_coll[c] = {"tasks": sum(1 for n in names if coll_of[n] == c),
                       "rate_requested": rates.get(c, 0.0),
                       "planned_fraction": planned["collection_rates"].get(c, 0.0),
                       "planned": round(planned["collection_rates"].get(c, 0.0) * num_examples, 3),
                       "realized": realized, "realized_fraction": realized / num_examples}
    plain = Counter()
    cot_counts = Counter()
    for key, v in fmt_counts.items():
        plain[key.removesuffix("+cot")] += v
        cot_counts[str(key.endswith("+cot"))] += v
    manifest = {
        "num_examples": num_examples, "seed": seed, "files": [p.name for p in paths],
        "fingerprint_sha256": fingerprint, "per_collection": per_coll, "per_task": per_task,
        "missing_collections": planned["missing_collections"], "caps": dict(caps),
        "format_counts": dict(sorted(plain.items())), "cot_counts": dict(sorted(cot_counts.items())),
        "format_by_collection": {c: dict(sorted(v.items())) for c, v in sorted(coll_formats.items())},
        "format_ratios": dataclasses.asdict(ratios),
        "token_unit": TOKEN_UNIT, "input_length": _length_stats(in_lens), "target_length": _length_stats(out_lens),
        "length_samples": {"inputs": in_lens[:5000], "targets": out_lens[:5000]},
        "template_fallbacks": dict(sorted(renderer.fallbacks.items())),
        "samples": dict(sorted(samples.items())),
        **(extra or {}),
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    return manifest


# ---------------------------------------------------------------------------------------------
# Notebook step functions


def resolve(cfg: MixingParams) -> tuple[Preset, dict[str, float], dict[str, int]]:
    preset = load_preset(cfg.preset)
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
                   max_examples_per_task: int, progress: bool = True) -> tuple[list[TaskData], dict[str, Any]]:
    """Raw examples of each task (local files or synthetic); tasks that cannot load are reported."""
    from tqdm.auto import tqdm

    from flan_nb.data import loaders as data

    out: list[TaskData] = []
    failed: dict[str, str] = {}
    stats: dict[str, Any] = {}
    for task in tqdm(tasks, desc="loading tasks", disable=not progress):
        try:
            ds = data.load_task(task, data_root, seed=seed, synthetic_size=synthetic_n,
                                max_examples=max_examples_per_task or None, on_bad_rows="skip", stats=stats)
        except (FileNotFoundError, NotImplementedError) as exc:
            failed[task.id] = str(exc)
            continue
        if len(ds):
            out.append(TaskData(task, ds.to_list()))
        else:
            failed[task.id] = "no examples"
    return out, {"failed_to_load": failed, "bad_rows": stats.get("bad_rows", 0),
                 "bad_examples": stats.get("bad_examples", [])}


def build_mixture(cfg: MixingParams, run: Any, *, progress: bool = True) -> dict[str, Any]:
    """Notebook 01's one call: select tasks, load, mix, write under run.artifacts/'mixture'.

    Records `mixture_path` and writes the `mixing` metrics section. Returns the manifest.
    """
    from flan_nb import config

    preset, rates, caps = resolve(cfg)
    ratios = FormatRatios(cfg.fs_fraction, cfg.opt_fraction, cfg.cot_fraction, cfg.max_exemplars,
                          cfg.max_input_tokens)
    root = config.data_root(cfg.data_root)
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"data_root {root} does not exist")
    if root is None and preset.only_available:
        raise FileNotFoundError(
            f"preset {preset.name!r} mixes what the offline mirror holds: set data_root (or "
            f"FLAN_NB_DATA) to the mirror, or use preset 'synthetic'")
    registry = registry_mod.load_registry()
    tasks, hygiene = select_tasks(preset, registry, root)
    task_data, load_report = load_task_data(tasks, root, seed=cfg.seed,
                                            synthetic_n=cfg.synthetic_examples_per_family,
                                            max_examples_per_task=cfg.max_examples_per_task,
                                            progress=progress)
    if not task_data:
        failed = load_report["failed_to_load"]
        first = "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:3])
        raise FileNotFoundError(
            f"preset {preset.name!r}: none of its {len(tasks)} tasks could be loaded (set data_root to "
            f"the offline mirror, or run connected to the hub). First failures: {first}")
    if load_report["failed_to_load"]:
        warnings.warn(f"preset {preset.name!r}: {len(load_report['failed_to_load'])} of {len(tasks)} tasks "
                      f"have no data here and are left out (see manifest['loading'])", stacklevel=2)
    out_dir = Path(run.artifacts) / "mixture"
    manifest = mix(task_data, rates=rates, caps=caps, num_examples=cfg.num_examples, seed=cfg.seed,
                   ratios=ratios, out_dir=out_dir, workers=cfg.workers, progress=progress,
                   extra={"preset": preset.name, "preset_notes": preset.notes, "hygiene": hygiene,
                          "loading": load_report, "tasks_selected": len(tasks),
                          "tasks_mixed": len(task_data)})
    run.record_output("mixture_path", str(out_dir))
    run.write_json("mixing/manifest.json", manifest)
    run.write_metrics("mixing", summary(manifest))
    return manifest


def summary(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The compact `mixing` section of metrics.json."""
    return {
        "preset": manifest.get("preset"), "num_examples": manifest["num_examples"],
        "tasks_mixed": manifest.get("tasks_mixed", len(manifest["per_task"])),
        "fingerprint_sha256": manifest["fingerprint_sha256"],
        "collections": {c: {"planned_fraction": round(v["planned_fraction"], 4),
                            "realized_fraction": round(v["realized_fraction"], 4), "tasks": v["tasks"]}
                        for c, v in manifest["per_collection"].items()},
        "format_counts": manifest["format_counts"],
        "input_length_mean": manifest["input_length"].get("mean"),
        "target_length_mean": manifest["target_length"].get("mean"),
        "token_unit": manifest["token_unit"],
        "niv2_mmlu_dropped": (manifest.get("hygiene") or {}).get("niv2_mmlu_dropped_count", 0),
    }


