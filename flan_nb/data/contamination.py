"""13-gram overlap between a mixture and the held-out evaluation sets (per eval subtask).

Held-out is the premise of every number in the paper (P §2.3): MMLU, BBH, TyDiQA and MGSM are not
supposed to appear in the finetuning data. This module checks it the way GPT-3 / FLAN-style
contamination studies do: an eval item is *contaminated* if any of its 13-grams (lower-cased
alphanumeric word tokens) occurs in a mixture row's input or target. Items shorter than 13 tokens
count as one n-gram of their full length (so short exact copies are still caught).

The index is built on the eval side (thousands of items); the mixture is streamed once in Arrow
batches, so memory stays bounded by the eval sets, not the mixture.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

N = 13
_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def ngrams(toks: Sequence[str], n: int = N) -> Iterable[tuple[str, ...]]:
    if len(toks) < n:
        if toks:
            yield tuple(toks)
        return
    for i in range(len(toks) - n + 1):
        yield tuple(toks[i:i + n])


def item_text(benchmark: str, rec: Mapping[str, Any]) -> str:
    """The text of one eval record that a leak would copy."""
    if benchmark == "mmlu":
        return rec["question"] + " " + " ".join(rec.get("choices", []))
    if benchmark == "bbh":
        return rec["input"]
    if benchmark == "tydiqa":
        return rec["question"] + " " + rec["context"]
    if benchmark == "mgsm":
        return rec["question"]
    raise KeyError(f"unknown benchmark {benchmark!r}")


def eval_sets(data_root: str | Path | None, *, synthetic: bool = True, synthetic_n: int = 50,
              benchmarks: Sequence[str] = ("mmlu", "bbh", "tydiqa", "mgsm"), seed: int = 0
              ) -> dict[tuple[str, str], list[str]]:
    """(benchmark label, subtask) -> item texts, from the mirror (if given) and the synthetic suite."""
    from flan_nb.eval import benchmarks as benchmark_data

    out: dict[tuple[str, str], list[str]] = {}
    sources = []
    if data_root:
        sources.append(("offline", ""))
    if synthetic:
        sources.append(("synthetic", "synthetic_"))
    for source, prefix in sources:
        for bench in benchmarks:
            kw: dict[str, Any] = {"source": source, "seed": seed}
            if source == "offline":
                kw["data_root"] = str(data_root)
            else:
                kw["n_per_subtask"] = synthetic_n
            data = benchmark_data.load(bench, **kw)
            for sub, items in data.items.items():
                out[(prefix + bench, sub)] = [item_text(bench, r) for r in items]
    return out


def build_index(sets: Mapping[tuple[str, str], Sequence[str]], n: int = N
                ) -> tuple[dict[tuple[str, ...], list[int]], list[tuple[str, str]]]:
    """n-gram -> ids of the eval items containing it; ids index the returned (bench, subtask) list."""
    index: dict[tuple[str, ...], list[int]] = defaultdict(list)
    owners: list[tuple[str, str]] = []
    for key, texts in sets.items():
        for text in texts:
            item = len(owners)
            owners.append(key)
            for g in set(ngrams(tokens(text), n)):
                index[g].append(item)
    return dict(index), owners


def scan(rows: Iterable[Mapping[str, Any]], index: Mapping[tuple[str, ...], list[int]], n: int = N
         ) -> tuple[dict[int, Counter], int]:
    """eval item id -> Counter of mixture tasks whose rows share an n-gram with it; rows scanned."""
    hits: dict[int, Counter] = defaultdict(Counter)
    seen = 0
    for row in rows:
        seen += 1
        found: set[int] = set()
        for field in ("inputs", "targets"):
            for g in ngrams(tokens(row[field]), n):
                items = index.get(g)
                if items:
                    found.update(items)
        for item in found:
            hits[item][row["task"]] += 1
    return hits, seen


def _mixture_rows(mixture: Any, max_rows: int | None) -> Iterable[Mapping[str, Any]]:
    import datasets

    ds = datasets.load_from_disk(str(mixture)) if isinstance(mixture, (str, Path)) else mixture
    if max_rows is not None and len(ds) > max_rows:
        ds = ds.select(range(max_rows))
    for batch in ds.select_columns(["inputs", "targets", "task"]).iter(batch_size=2000):
        for i in range(len(batch["task"])):
            yield {"inputs": batch["inputs"][i], "targets": batch["targets"][i], "task": batch["task"][i]}


def report(mixture: Any, data_root: str | Path | None, *, synthetic: bool = True, synthetic_n: int = 50,
           max_rows: int | None = None, n: int = N, seed: int = 0,
           sets: Mapping[tuple[str, str], Sequence[str]] | None = None):
    """One row per eval subtask: items, contaminated items, % and the top overlapping mixture tasks.

    `mixture` is a path written by mixing (or a datasets.Dataset / list of row dicts).
    """
    import pandas as pd

    sets = sets if sets is not None else eval_sets(data_root, synthetic=synthetic, synthetic_n=synthetic_n, seed=seed)
    index, owners = build_index(sets, n)
    rows = mixture if isinstance(mixture, list) else _mixture_rows(mixture, max_rows)
    hits, scanned = scan(rows, index, n)
    per_key_items: Counter = Counter(owners)
    per_key_hit: Counter = Counter()
    per_key_tasks: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for item, tasks in hits.items():
        key = owners[item]
        per_key_hit[key] += 1
        per_key_tasks[key].update(tasks)
    out = []
    for key in sets:
        total, bad = per_key_items[key], per_key_hit[key]
        top = ", ".join(f"{t} ({c})" for t, c in per_key_tasks[key].most_common(3))
        out.append({"benchmark": key[0], "subtask": key[1], "items": total, "contaminated": bad,
                    "pct": round(100.0 * bad / total, 2) if total else 0.0,
                    "mixture_tasks": top, "mixture_rows_scanned": scanned, "ngram": n})
    return pd.DataFrame(out)


def by_benchmark(df):
    """The per-benchmark roll-up of `report` (what metrics.json records)."""
    g = df.groupby("benchmark")[["items", "contaminated"]].sum()
    g["pct"] = (100.0 * g["contaminated"] / g["items"]).round(2)
    return g.reset_index()


MAX_SCAN_ROWS = 50_000  # notebook default: a 13-gram scan of the first rows of a large mixture


def check(cfg: Any, run: Any, mixture_path: str | Path, *, max_rows: int | None = MAX_SCAN_ROWS):
    """Notebook 01's contamination step: report against the mirror's eval sets (if data_root is
    set) and the synthetic benchmark sets; writes mixing/contamination.json and metrics."""
    from flan_nb import config

    root = config.data_root(getattr(cfg, "data_root", ""))
    df = report(mixture_path, root if root and root.is_dir() else None, max_rows=max_rows,
                seed=getattr(cfg, "seed", 0))
    run.write_json("mixing/contamination.json", df.to_dict(orient="records"))
    roll = by_benchmark(df)
    run.write_metrics("mixing", {"contamination": {
        r["benchmark"]: {"items": int(r["items"]), "contaminated": int(r["contaminated"]), "pct": float(r["pct"])}
        for r in roll.to_dict(orient="records")}})
    return df
