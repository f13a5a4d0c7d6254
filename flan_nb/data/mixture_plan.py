"""Mixture planning: presets, collection rates, task selection and hygiene, per-task probabilities.

Examples-proportional mixing with per-collection caps, then collection rates (paper App. E,
Table 23). Exact arithmetic, no data needed; `mixing` renders what is planned here.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flan_nb.data import registry as registry_mod
from flan_nb.data.mixture_io import MixingError
from flan_nb.data.registry import COLLECTIONS, Registry, Task

PRESET_DIR = Path(__file__).resolve().parents[1] / "resources" / "mixtures"
DEFAULT_CAPS = {"muffin": 30000, "t0sf": 20000, "cot": 100000, "niv2": 5000, "synthetic": 100000}


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
    # rendered Flan Collection exports (flan_exports): {submix: {source, task_source, collection}};
    # empty = our registry tasks rendered with our templates
    exports: Mapping[str, Any] = field(default_factory=dict)
    exclude_tasks: tuple[str, ...] = ()  # regexes of export task names to leave out


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> Preset:
    from flan_nb import yaml_io

    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise registry_mod.unknown(name, available_presets(), "mixture preset")
    doc = yaml_io.load_file(path)
    known = {"name", "description", "collections", "rates", "caps", "niv2_first_n", "only_available", "notes",
             "exports", "exclude_tasks"}
    extra = set(doc) - known
    if extra:
        raise MixingError(f"{path}: unknown key(s) {sorted(extra)}; known: {sorted(known)}")
    if doc.get("name") != name:
        raise MixingError(f"{path}: name {doc.get('name')!r} must equal the file stem {name!r}")
    collections = tuple(doc["collections"])
    if doc.get("exports"):
        from flan_nb.data import flan_exports

        flan_exports.parse_exports(doc["exports"], str(path))
    for c in collections:
        if c not in COLLECTIONS:
            raise registry_mod.unknown(c, COLLECTIONS, f"collection (in {path})")
    return Preset(name=name, description=doc.get("description", ""), collections=collections,
                  rates=dict(doc["rates"]), caps={**DEFAULT_CAPS, **(doc.get("caps") or {})},
                  niv2_first_n=doc.get("niv2_first_n"), only_available=bool(doc.get("only_available")),
                  notes=doc.get("notes", ""), path=str(path), exports=dict(doc.get("exports") or {}),
                  exclude_tasks=tuple(doc.get("exclude_tasks") or ()))


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
              "held_out_dropped": held, "unavailable_dropped_count": len(unavailable),
              "unavailable_dropped": unavailable}
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



def missing_data(preset_collections: Sequence[str], rates: Mapping[str, float], mixed: Sequence[Task],
                 failed: Mapping[str, str], unavailable: Sequence[str],
                 collection_of: Mapping[str, str]) -> dict[str, Any]:
    """What the preset asked for and the mixture lacks: {"collections": {c: reason},
    "tasks": {task: reason}}; `partial` is true when either is non-empty."""
    tasks = dict(failed)
    for t in unavailable:
        tasks.setdefault(t, "not in the offline mirror (preset only_available)")
    have = {t.collection for t in mixed}
    colls = {c: "no loadable task" for c in preset_collections if rates.get(c, 0) > 0 and c not in have}
    by_coll: dict[str, int] = defaultdict(int)
    for t in tasks:
        by_coll[collection_of.get(t, "?")] += 1
    return {"partial": bool(colls or tasks), "collections": colls, "tasks": dict(sorted(tasks.items())),
            "tasks_missing_by_collection": dict(sorted(by_coll.items()))}


def check_missing(missing: Mapping[str, Any], *, preset: str, allow_missing: bool) -> None:
    """Raise MixingError listing every missing collection and task with its reason, unless
    `allow_missing` (then the run goes on and is marked partial)."""
    if not missing["partial"] or allow_missing:
        return
    by_reason: dict[str, list[str]] = defaultdict(list)
    for task, reason in missing["tasks"].items():
        by_reason[str(reason).splitlines()[0] if reason else "?"].append(task)
    lines = [f"preset {preset!r}: the mixture would be partial"]
    lines += [f"  collection {c}: {r}" for c, r in missing["collections"].items()]
    lines += [f"  {len(ts)} task(s) [{reason}]: {', '.join(ts)}" for reason, ts in by_reason.items()]
    lines.append("Fix: set data_root (or FLAN_NB_DATA) to a mirror that holds them, run connected to "
                 "the hub, or set allow_missing: true to mix what loads (the run is then marked partial).")
    raise MixingError("\n".join(lines))
