"""The task registry of the Flan collection: which tasks exist, where their data lives, what they are.

A *task* is a <dataset, task category> pair (paper Fig. 2). The registry is data, not code: one
JSON file per collection under `flan_nb/resources/registry/`, generated once from the released
Flan metadata in the offline mirror by `generate()` and committed. It holds task names and
metadata only, never examples.

How the paper's counts are reached from the released files (see `generate()`):
- CoT 9: the 9 forward CoT tasks of flan_collection_info.csv (the 27 other CoT rows are the
  input-inverted "CoT-II" variants, which the paper's mixture does not count).
- Muffin 80: the 72 non-inverted FLAN / FLAN-T0 rows (mnli twice: matched + mismatched) plus the
  8 new forward tasks (3 dialog: qrecc, task_master, wiki_dialog; 5 program synthesis: dmcc_python,
  4 dr_repair variants); their second rows are inversions, like the FLAN "Inverted" rows.
- T0-SF 193: the `in_flan: false` entries of t0_train_task_metadata.json.
- NIV2: natinst_metadata.json has 1,654 entries; 41 are hyphenated aliases of underscore-named
  tasks (same task id, renamed upstream) -> 1,613; the MMLU filter (ids 664-667, 685-737) removes 57
  -> 1,556, which is exactly the NIv2 row set of flan_collection_info.csv and has exactly the
  paper's 372 datasets and 108 categories. The paper says 1,554 (and "44" MMLU tasks removed); the
  2-task gap is NOT explained by any released file, so we keep all 1,556 and say so: the "1836"
  preset therefore has 1,838 tasks. The 57 MMLU tasks stay in the registry with held_out=true so
  the filter is visible and reportable.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flan_nb import config

COLLECTIONS = ("muffin", "t0sf", "niv2", "cot", "synthetic")
REGISTRY_DIR = Path(__file__).resolve().parents[1] / "resources" / "registry"
REGISTRY_VERSION = 1

# FLAN's filter_mmlu_fn drops these NIv2 task ids (the task6xx_mmmlu_answer_generation_* tasks).
NIV2_MMLU_IDS = tuple(range(664, 668)) + tuple(range(685, 738))


class UnknownNameError(KeyError):
    """A task, collection or preset name that does not exist; the message lists close names."""

    def __str__(self) -> str:
        return str(self.args[0])


def unknown(name: str, valid: Iterable[str], what: str) -> UnknownNameError:
    return UnknownNameError(f"unknown {what} {name!r}{config.did_you_mean(name, sorted(valid), n=5)}")


@dataclass(frozen=True)
class Task:
    id: str
    collection: str
    dataset: str
    category: str
    language: str
    source: Mapping[str, Any]
    size: int | None
    license: str
    held_out: bool
    template_set: str
    extra: Mapping[str, Any] = field(default_factory=dict)


def niv2_task_number(name: str) -> int:
    match = re.match(r"task(\d+)", name)
    if not match:
        raise ValueError(f"not an NIv2 task name: {name!r}")
    return int(match.group(1))


class Registry:
    """All registered tasks, by id, in file order (deterministic)."""

    def __init__(self, tasks: Sequence[Task]):
        self.tasks: dict[str, Task] = {}
        for task in tasks:
            if task.id in self.tasks:
                raise ValueError(f"duplicate task id {task.id!r} in the registry")
            self.tasks[task.id] = task

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, name: object) -> bool:
        return name in self.tasks

    def __iter__(self):
        return iter(self.tasks.values())

    def get(self, name: str) -> Task:
        try:
            return self.tasks[name]
        except KeyError:
            raise unknown(name, self.tasks, "task") from None

    def select(self, collection: str | None = None, *, include_held_out: bool = False) -> list[Task]:
        if collection is not None and collection not in COLLECTIONS:
            raise unknown(collection, COLLECTIONS, "collection")
        return [t for t in self.tasks.values()
                if (collection is None or t.collection == collection)
                and (include_held_out or not t.held_out)]

    def counts(self, *, include_held_out: bool = False) -> dict[str, int]:
        return {c: len(self.select(c, include_held_out=include_held_out)) for c in COLLECTIONS}


def _task_from_dict(d: Mapping[str, Any], where: str) -> Task:
    try:
        return Task(id=d["id"], collection=d["collection"], dataset=d["dataset"],
                    category=d["category"], language=d["language"], source=d["source"],
                    size=d["size"], license=d["license"], held_out=bool(d["held_out"]),
                    template_set=d["template_set"], extra=d.get("extra", {}))
    except KeyError as exc:
        raise ValueError(f"{where}: task entry {d.get('id', '?')!r} misses field {exc}") from None


def _synthetic_tasks() -> list[Task]:
    """Synthetic families come from flan_nb.data.synthetic at run time so the two never drift apart.

    Held-out families (the synthetic benchmarks) are registered with held_out=True so that
    presets and coverage can show them, and mixing refuses them.
    """
    from flan_nb.data import synthetic

    tasks = []
    for fam in synthetic.FAMILIES:
        info = synthetic.family_info(fam)
        tasks.append(Task(
            id=f"synthetic_{fam}", collection="synthetic", dataset=fam, category=info.category,
            language="en", source={"synthetic": fam}, size=None, license="generated (flan_nb)",
            held_out=info.held_out, template_set=fam,
            extra={"has_options": info.has_options, "has_cot": info.has_cot}))
    return tasks


@functools.lru_cache(maxsize=4)
def load_registry(directory: str = "") -> Registry:
    """Read every `<collection>.json` under the registry directory (plus the synthetic suite)."""
    base = Path(directory) if directory else REGISTRY_DIR
    tasks: list[Task] = []
    for collection in COLLECTIONS:
        path = base / f"{collection}.json"
        if not path.is_file():
            continue
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("version") != REGISTRY_VERSION:
            raise ValueError(f"{path}: registry version {payload.get('version')} != {REGISTRY_VERSION}")
        for i, entry in enumerate(payload["tasks"]):
            task = _task_from_dict(entry, f"{path} task #{i}")
            if task.collection != collection:
                raise ValueError(f"{path} task #{i} {task.id!r}: collection {task.collection!r}")
            tasks.append(task)
    if not (base / "synthetic.json").is_file():
        tasks.extend(_synthetic_tasks())
    return Registry(tasks)


# ---------------------------------------------------------------------------------------------
# Offline coverage


def local_path(task: Task, data_root: Path | None) -> Path | None:
    rel = task.source.get("local")
    if not rel or data_root is None:
        return None
    return Path(data_root) / rel


def coverage(data_root: str | Path | None, registry: Registry | None = None):
    """One row per registered task: is its data available here, and how.

    `how` is one of: local file (the task's own data file), slice (a llm-foundry slice of the
    dataset in a converted format), synthetic (generated), templates only (T0-SF: promptsource
    template present, examples need the hub), hub only, no hub mapping (Muffin: a hub id is known
    but muffin_hub.yaml has no record mapping for it, so no loader can read it), missing.
    """
    import pandas as pd

    from flan_nb.data import muffin_hub

    registry = registry or load_registry()
    mapped = set(muffin_hub.load_muffin_hub_spec())
    root = Path(data_root) if data_root else None
    rows = []
    for t in registry:
        how, path = "hub only" if t.source.get("hub") else "missing", None
        if how == "hub only" and t.collection == "muffin" and t.id not in mapped:
            how = "no hub mapping"
        if t.collection == "synthetic":
            how = "synthetic"
        elif root is not None:
            local = local_path(t, root)
            if local is not None and local.is_file():
                how, path = ("slice" if t.source.get("local_format") == "slice" else "local file"), local
            elif t.collection == "t0sf" and t.source.get("templates") and (root / t.source["templates"]).is_file():
                how = "templates only"
        rows.append({"id": t.id, "collection": t.collection, "held_out": t.held_out,
                     "available": how in ("local file", "slice", "synthetic"), "how": how,
                     "path": str(path) if path else "", "size": t.size})
    return pd.DataFrame(rows)


def coverage_summary(cov) -> Any:
    """Counts of tasks by collection x availability (the table notebook 01 shows)."""
    table = cov[~cov["held_out"]].pivot_table(index="collection", columns="how", values="id",
                                               aggfunc="count", fill_value=0)
    table["total"] = table.sum(axis=1)
    return table


# ---------------------------------------------------------------------------------------------
# Generation of the registry files from the released Flan metadata (run once, output committed)

COT_DATASETS = {  # file stem -> (lines in the FLAN file, paper Table 24 count)
    "gsm8k": (7473, 7470), "strategyqa": (2061, 2060), "creak": (6915, 6910),
    "qasc": (1084, 1080), "esnli": (36174, 36170), "ecqa": (7112, 7110),
    "sensemaking": (6070, 6070), "aqua": (2728, 2715), "qed": (5154, 5145),
}

# Muffin datasets -> (hub id, hub config, llm-foundry slice). Hub ids are the usual HF names of
# the TFDS datasets FLAN reads; None where no faithful hub copy is known (connected users add one).
MUFFIN_SOURCES: dict[str, tuple[str | None, str | None, str | None]] = {
    "aeslc": ("Yale-LILY/aeslc", None, None), "ag_news_subset": ("fancyzhx/ag_news", None, None),
    "anli_r1": ("facebook/anli", None, None), "anli_r2": ("facebook/anli", None, None),
    "anli_r3": ("facebook/anli", None, None),
    "arc_challenge": ("allenai/ai2_arc", "ARC-Challenge", "arc_challenge.jsonl"),
    "arc_easy": ("allenai/ai2_arc", "ARC-Easy", "arc_easy.jsonl"),
    "bool_q": ("google/boolq", None, "boolq.jsonl"), "cb": ("aps/super_glue", "cb", None),
    "cnn_dailymail": ("abisee/cnn_dailymail", "3.0.0", None), "cola": ("nyu-mll/glue", "cola", None),
    "common_gen": ("allenai/common_gen", None, None),
    "copa": ("aps/super_glue", "copa", "copa.jsonl"), "coqa": ("stanfordnlp/coqa", None, None),
    "cosmos_qa": ("allenai/cosmos_qa", None, None), "dart": ("Yale-LILY/dart", None, None),
    "definite_pronoun_resolution": ("definite_pronoun_resolution", None, None),
    "drop": ("ucinlp/drop", None, None), "e2e_nlg": ("tuetschek/e2e_nlg", None, None),
    "fix_punct": ("EdinburghNLP/xsum", None, None), "gigaword": ("Harvard/gigaword", None, None),
    "glue_mrpc": ("nyu-mll/glue", "mrpc", None), "glue_qqp": ("nyu-mll/glue", "qqp", None),
    "hellaswag": ("Rowan/hellaswag", None, None), "imdb_reviews": ("stanfordnlp/imdb", None, None),
    "lambada": ("EleutherAI/lambada_openai", None, "lambada_openai.jsonl"),
    "math_dataset": ("deepmind/math_dataset", "algebra__linear_1d", None),
    "mnli_matched": ("nyu-mll/glue", "mnli", None), "mnli_mismatched": ("nyu-mll/glue", "mnli", None),
    "multi_news": ("alexfabbri/multi_news", None, None),
    "multirc": ("aps/super_glue", "multirc", None),
    "natural_questions": ("google-research-datasets/nq_open", None, None),
    "newsroom": (None, None, None), "openbookqa": ("allenai/openbookqa", "main", "openbook_qa.jsonl"),
    "opinion_abstracts_idebate": (None, None, None),
    "opinion_abstracts_rotten_tomatoes": (None, None, None), "para_crawl_enes": (None, None, None),
    "paws_wiki": ("google-research-datasets/paws", "labeled_final", None),
    "piqa": ("ybisk/piqa", None, "piqa.jsonl"), "qnli": ("nyu-mll/glue", "qnli", None),
    "quac": ("allenai/quac", None, None), "record": ("aps/super_glue", "record", None),
    "rte": ("aps/super_glue", "rte", None), "samsum": ("Samsung/samsum", None, None),
    "sentiment140": ("stanfordnlp/sentiment140", None, None),
    "snli": ("stanfordnlp/snli", None, None), "squad_v1": ("rajpurkar/squad", None, None),
    "squad_v2": ("rajpurkar/squad_v2", None, None), "sst2": ("stanfordnlp/sst2", None, None),
    "story_cloze": (None, None, None), "stsb": ("nyu-mll/glue", "stsb", None),
    "trec": ("CogComp/trec", None, None),
    "trivia_qa": ("mandarjoshi/trivia_qa", "rc", "triviaqa_sm_sub.jsonl"),
    "trivia_qa_wiki_missing": ("mandarjoshi/trivia_qa", "rc.nocontext", None),
    "true_case": ("EdinburghNLP/xsum", None, None), "unified_qa_science_inst": ("allenai/unifiedqa", None, None),
    "web_nlg_en": ("web_nlg", "release_v3.0_en", None), "wic": ("aps/super_glue", "wic", None),
    "wiki_lingua_english_en": ("esdurmus/wiki_lingua", "english", None),
    "winogrande": ("allenai/winogrande", "winogrande_xl", "winogrande.jsonl"),
    "wmt14_enfr": ("wmt/wmt14", "fr-en", None), "wmt16_translate_csen": ("wmt/wmt16", "cs-en", None),
    "wmt16_translate_deen": ("wmt/wmt16", "de-en", None),
    "wmt16_translate_fien": ("wmt/wmt16", "fi-en", None),
    "wmt16_translate_roen": ("wmt/wmt16", "ro-en", None),
    "wmt16_translate_ruen": ("wmt/wmt16", "ru-en", None),
    "wmt16_translate_tren": ("wmt/wmt16", "tr-en", None), "wnli": ("nyu-mll/glue", "wnli", None),
    "word_segment": ("EdinburghNLP/xsum", None, None),
    "wsc": ("aps/super_glue", "wsc.fixed", "winograd_wsc.jsonl"),
    "xsum": ("EdinburghNLP/xsum", None, None),
    "yelp_polarity_reviews": ("fancyzhx/yelp_polarity", None, None),
    # the 26 "new" Muffin tasks' datasets: dialog and program synthesis (never released by FLAN)
    "qrecc": ("apple/qrecc", None, None), "task_master": ("google/Taskmaster", None, None),
    "wiki_dialog": (None, None, None), "dmcc_python": ("deepmind/code_contests", None, None),
    "dr_repair_error_comments": (None, None, None), "dr_repair_line_numbers": (None, None, None),
    "dr_repair_no_errors": (None, None, None), "dr_repair_plain_code": (None, None, None),
}

# Dataset-specific template sets (flan_nb/resources/templates/<name>.yaml). Every Muffin task has
# its own instruction set under templates/muffin/: `muffin/<task id>`, or the shared family set
# named here (the family files name each task's specifics through per-task constants).
TEMPLATE_SETS = {
    "cos_e": "commonsense_qa", "social_i_qa": "siqa",
    **{t: "muffin/translation" for t in (
        "wmt14_enfr", "wmt16_translate_csen", "wmt16_translate_deen", "wmt16_translate_fien",
        "wmt16_translate_roen", "wmt16_translate_ruen", "wmt16_translate_tren", "para_crawl_enes")},
    **{t: "muffin/nli_three_way" for t in (
        "anli_r1", "anli_r2", "anli_r3", "mnli_matched", "mnli_mismatched", "snli", "cb")},
    "rte": "muffin/nli_two_way", "wnli": "muffin/nli_two_way",
    **{t: "muffin/sentiment_binary" for t in (
        "imdb_reviews", "yelp_polarity_reviews", "sst2", "sentiment140")},
    **{t: "muffin/paraphrase" for t in ("glue_mrpc", "glue_qqp", "paws_wiki")},
    "arc_easy": "muffin/arc", "arc_challenge": "muffin/arc",
    "trivia_qa": "muffin/trivia_qa", "trivia_qa_wiki_missing": "muffin/trivia_qa",
    **{t: "muffin/dr_repair" for t in (
        "dr_repair_error_comments", "dr_repair_line_numbers", "dr_repair_no_errors",
        "dr_repair_plain_code")},
}


def muffin_template_set(task_id: str) -> str:
    """The instruction template set of a Muffin task (shared family set, else its own)."""
    return TEMPLATE_SETS.get(task_id, f"muffin/{task_id}")


# T0-SF tasks whose dataset has a llm-foundry slice (converted format, not the promptsource one).
# Only the first (sorted) T0-SF task of each such dataset points at the slice.
T0_SLICES = {"social_i_qa": "siqa.jsonl", "cos_e": "commonsense_qa.jsonl"}


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _language(raw: str) -> str:
    raw = raw.strip()
    if raw.startswith("["):
        try:
            import ast

            return ",".join(ast.literal_eval(raw))
        except (ValueError, SyntaxError):
            return raw
    return raw


def _promptsource_index(root: Path) -> dict[str, dict[str, Any]]:
    """normalized P3 subtask name -> promptsource dataset/subset/template name/file."""
    from flan_nb.data import promptsource

    index: dict[str, dict[str, Any]] = {}
    base = root / "t0" / "promptsource_templates"
    for path in sorted(base.rglob("templates.yaml")):
        doc = promptsource.read_promptsource_yaml(path)
        dataset, subset = doc.get("dataset"), doc.get("subset")
        for tmpl in doc.get("templates", {}).values():
            key = _norm("_".join(x for x in (dataset, subset, tmpl["name"]) if x))
            index[key] = {"dataset": dataset, "subset": subset, "template": tmpl["name"],
                          "template_id": tmpl["id"], "file": str(path.relative_to(root))}
    return index


def generate(data_root: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Derive the registry JSON files from the released Flan metadata in the mirror.

    Returns a report with the counts and every decision (aliases dropped, MMLU tasks, gaps).
    """
    root = Path(data_root)
    out = Path(out_dir) if out_dir else REGISTRY_DIR
    out.mkdir(parents=True, exist_ok=True)
    info_path = root / "flan_collection_info.csv"
    with info_path.open(encoding="utf-8", newline="") as handle:
        info = list(csv.DictReader(handle))
    report: dict[str, Any] = {}
    files = {"cot": _cot_tasks(info), "muffin": _muffin_tasks(info),
             "t0sf": _t0sf_tasks(info, root, report),
             "niv2": _niv2_tasks(info, root, info_path, report)}
    for collection, tasks in files.items():
        payload = {"version": REGISTRY_VERSION, "collection": collection,
                   "generated_from": "offline mirror: flan_collection_info.csv, natinst_metadata.json, "
                                     "t0_train_task_metadata.json, t0_datasets.csv, promptsource templates",
                   "generator": "flan_nb.data.registry.generate", "tasks": tasks}
        (out / f"{collection}.json").write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
    report["counts"] = {c: sum(not t["held_out"] for t in tasks) for c, tasks in files.items()}
    report["total_non_synthetic"] = sum(report["counts"].values())
    load_registry.cache_clear()
    return report


def _cot_tasks(info: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The 9 CoT tasks (CoT: first row per dataset is the forward task; the other three are inversions (CoT-II).)"""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for row in info:
        if row["Source"] != "CoT" or row["Dataset"] in seen:
            continue
        seen.add(row["Dataset"])
        name = row["Dataset"]
        stem = name.split("_", 1)[1]
        nlines, paper_n = COT_DATASETS[stem]
        out.append({
            "id": name, "collection": "cot", "dataset": stem, "category": row["Generic Task Category"],
            "language": _language(row["Languages"]),
            "source": {"local": f"flan_cot/{stem}_train.tsv", "local_format": "cot_tsv",
                       "hub": None, "flan_file": f"flan/v2/cot_data/{stem}_train.tsv"},
            "size": nlines, "license": "Apache-2.0 (FLAN cot_data)", "held_out": False,
            "template_set": stem, "extra": {"paper_size": paper_n},
        })
    return out


def _muffin_tasks(info: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The 80 Muffin tasks (Muffin: non-inverted FLAN rows + the forward row of each dialog / program-synthesis dataset.)"""
    out: list[dict[str, Any]] = []
    mnli_seen = 0
    seen = set()
    for row in info:
        src, name, cat = row["Source"], row["Dataset"], row["Generic Task Category"]
        if src not in ("FLAN", "FLAN/T0", "Dialog", "Program Synthesis") or cat.startswith("Inverted"):
            continue
        if name == "mnli":
            name = ("mnli_matched", "mnli_mismatched")[mnli_seen]
            mnli_seen += 1
        if name in seen:  # dialog/program rows: the second category is the inversion
            continue
        seen.add(name)
        hub, hub_config, slice_file = MUFFIN_SOURCES[name]
        source: dict[str, Any] = {"hub": hub, "hub_config": hub_config}
        if slice_file:
            source.update(local=f"muffin_t0_slices/{slice_file}", local_format="slice")
        out.append({
            "id": name, "collection": "muffin", "dataset": name, "category": cat,
            "language": _language(row["Languages"]), "source": source, "size": None,
            "license": "per dataset", "held_out": False,
            "template_set": muffin_template_set(name),
            "extra": {"flan_source": src},
        })
    return out


def _t0sf_tasks(info: list[dict[str, str]], root: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The T0-SF tasks; unmatched templates go to `report` (T0-SF: in_flan false entries, categories from flan_collection_info, promptsource template.)"""
    out: list[dict[str, Any]] = []
    t0_meta = json.loads((root / "t0" / "t0_train_task_metadata.json").read_text(encoding="utf-8"))
    t0_info = {row["Specific Task Category"]: row for row in info if row["Source"] == "T0"}
    sizes: dict[str, int] = {}
    with (root / "t0" / "t0_datasets.csv").open(encoding="utf-8", newline="") as handle:
        for r in csv.DictReader(handle):
            if r["train_size"]:
                sizes["/".join(x for x in (r["HF_name"], r["subset"]) if x)] = int(r["train_size"])
    ps_index = _promptsource_index(root)
    unmatched = []
    slices_used: set[str] = set()
    for key, meta in sorted(t0_meta.items()):
        if meta["in_flan"]:
            continue
        sub = key.split(":", 1)[1]
        base = sub[: -len("_score_eval")] if sub.endswith("_score_eval") else sub
        ps = ps_index.get(_norm(base))
        row = t0_info.get(sub) or t0_info.get(base)
        if ps is None:
            unmatched.append(sub)
        dataset = ps["dataset"] if ps else (row["Dataset"] if row else sub)
        hub_name = "/".join(x for x in (ps["dataset"], ps["subset"]) if x) if ps else None
        source = {"hub": ps["dataset"] if ps else None, "hub_config": ps["subset"] if ps else None,
                  "p3": f"bigscience/P3/{sub}",
                  "templates": ps["file"] if ps else None,
                  "template_name": ps["template"] if ps else None}
        template_set = "t0sf"
        if ps and ps["dataset"] in T0_SLICES and ps["dataset"] not in slices_used:
            # one task per slice: the slice is untemplated data, repeating it under every
            # template of the dataset would multiply the same examples
            slices_used.add(ps["dataset"])
            source.update(local=f"muffin_t0_slices/{T0_SLICES[ps['dataset']]}", local_format="slice")
            template_set = TEMPLATE_SETS[ps["dataset"]]
        out.append({
            "id": sub, "collection": "t0sf", "dataset": dataset,
            "category": row["Generic Task Category"] if row else meta["task_type"],
            "language": _language(row["Languages"]) if row else "English", "source": source,
            "size": sizes.get(hub_name or ""), "license": "per dataset (P3)", "held_out": False,
            "template_set": template_set,
            "extra": {"task_type": meta["task_type"], "seq_len": meta["seq_len"],
                      "score_eval": sub.endswith("_score_eval")},
        })
    report["t0sf_unmatched_templates"] = unmatched
    return out


def _niv2_tasks(info: list[dict[str, str]], root: Path, info_path: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    """The NIV2 tasks with the MMLU ones held out; counts go to `report` (NIV2)"""
    out: list[dict[str, Any]] = []
    nat = json.loads((root / "niv2" / "natinst_metadata.json").read_text(encoding="utf-8"))
    niv2_rows = {row["Specific Task Category"]: row for row in info if row["Source"] == "NIv2"}
    names = set(nat)
    aliases = sorted(n for n in nat if "-" in n and n.replace("-", "_") in names)
    train_split = set((root / "niv2" / "splits" / "train_tasks.txt").read_text().split())
    test_split = set((root / "niv2" / "splits" / "test_tasks.txt").read_text().split())
    mmlu = []
    for name in sorted(nat, key=lambda n: (niv2_task_number(n), n)):
        if name in aliases:
            continue
        number = niv2_task_number(name)
        is_mmlu = number in NIV2_MMLU_IDS
        row = niv2_rows.get(name)
        if is_mmlu:
            mmlu.append(name)
        elif row is None:
            raise ValueError(f"{info_path}: NIv2 task {name} is neither an alias, MMLU nor listed")
        out.append({
            "id": name, "collection": "niv2", "dataset": row["Dataset"] if row else "mmlu",
            "category": row["Generic Task Category"] if row else "Question Answering",
            "language": _language(row["Languages"]) if row else "English",
            "source": {"hub": None, "local": f"niv2/tasks/{name}.json", "local_format": "niv2_json",
                       "upstream": f"allenai/natural-instructions tasks/{name}.json"},
            "size": nat[name]["number_examples"], "license": "per task (Instance License)",
            "held_out": is_mmlu, "template_set": "niv2",
            "extra": {"task_number": number,
                      "default_split": "test" if name in test_split else ("train" if name in train_split else "none"),
                      **({"held_out_reason": "MMLU (filter_mmlu_fn ids 664-667, 685-737)"} if is_mmlu else {})},
        })
    niv2_kept = [t for t in out if not t["held_out"]]
    report["niv2"] = {
        "metadata_entries": len(nat), "hyphen_aliases_dropped": len(aliases), "aliases": aliases,
        "mmlu_held_out": len(mmlu), "trainable": len(niv2_kept),
        "datasets": len({t["dataset"] for t in niv2_kept}),
        "categories": len({t["category"] for t in niv2_kept}),
        "paper": 1554, "gap_vs_paper": len(niv2_kept) - 1554,
        "default_split_train_in_metadata": len(train_split & names),
        "default_split_test_in_metadata": len(test_split & names),
    }
    return out
