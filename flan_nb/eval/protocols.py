"""Named evaluation protocols (flan_nb/resources/protocols.yaml) and their resolution.

A protocol fixes the values that decide whether a number is comparable to the paper's: the
subsample size, the prompt context, the generation budgets and the MMLU split. An eval notebook
selects one with its `protocol` parameter; its protocol keys default to None ("from the
protocol"), and a value given explicitly wins for that key only. Every resolved value that differs
from the protocol is an *override*, recorded in the run's manifest and in each benchmark's
metrics.json meta, so tables and `flan-nb compare` can say which rows were not run under `paper`.

Source: P section 2.3 / App. D (full held-out sets, MMLU validation split, exemplars of Hendrycks
et al. / Suzgun et al. / Shi et al. in full); FLAN's 2,048-token input length for T5 (FLAN
constants.py); the CoT budget measured by `measure_exemplar_chains` (see protocols.yaml).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from flan_nb import config, yaml_io

PAPER = "paper"
# EvalParams fields a protocol sets; None in a notebook's parameters means "from the protocol"
KEYS: tuple[str, ...] = ("max_per_subtask", "max_context", "max_new_tokens_direct",
                         "max_new_tokens_cot", "split")
_TYPES = {"max_per_subtask": int, "max_context": int, "max_new_tokens_direct": int,
          "max_new_tokens_cot": int, "split": str}
C = TypeVar("C")


class ProtocolError(config.ParamsError):
    """An unknown protocol name or a malformed protocols.yaml entry."""


@cache
def protocols() -> dict[str, dict[str, Any]]:
    """name -> {key: value} of every protocol in resources/protocols.yaml (checked)."""
    ref = resources.files("flan_nb") / "resources" / "protocols.yaml"
    raw = yaml_io.load_file(ref)
    if not isinstance(raw, Mapping) or PAPER not in raw:
        raise ProtocolError(f"{ref}: expected a mapping of protocols including `{PAPER}`")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in raw.items():
        where = f"{ref}: protocol `{name}`"
        if not isinstance(entry, Mapping):
            raise ProtocolError(f"{where} must be a mapping")
        unknown = set(entry) - set(KEYS) - {"description"}
        missing = set(KEYS) - set(entry)
        if unknown or missing:
            raise ProtocolError(f"{where}: unknown keys {sorted(unknown)}, missing keys "
                                f"{sorted(missing)} (expected {', '.join(KEYS)})")
        for key in KEYS:
            if not isinstance(entry[key], _TYPES[key]) or isinstance(entry[key], bool):
                raise ProtocolError(f"{where}: `{key}` must be {_TYPES[key].__name__}, got "
                                    f"{entry[key]!r}")
        out[str(name)] = {k: entry[k] for k in KEYS} | {"description": entry.get("description", "")}
    return out


def get(name: str, where: str = "") -> dict[str, Any]:
    """The values of protocol `name`; ProtocolError (naming the known ones) if unknown."""
    known = protocols()
    if name not in known:
        at = f" ({where})" if where else ""
        raise ProtocolError(f"unknown protocol {name!r}{at}{config.did_you_mean(name, known)}; "
                            "protocols are defined in flan_nb/resources/protocols.yaml")
    return {k: known[name][k] for k in KEYS}


def fill(values: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """`values` (EvalParams fields) with every protocol key that is None taken from the protocol
    named by values["protocol"]; explicit values are kept."""
    chosen = get(str(values.get("protocol", "")), where)
    return {**values, **{k: chosen[k] for k in KEYS if values.get(k) is None}}


def apply(cfg: C) -> C:
    """An EvalParams with its protocol filled in (idempotent; the notebooks and `evaluate`)."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    where = f"params file {values['params_file']}" if values.get("params_file") else ""
    return dataclasses.replace(cfg, **{k: v for k, v in fill(values, where).items() if k in KEYS})  # type: ignore[type-var]


def overrides(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{key: {"protocol": protocol value, "used": resolved value}} for every differing key."""
    chosen = get(str(values.get("protocol", "")))
    filled = fill(values)
    return {k: {"protocol": chosen[k], "used": filled[k]} for k in KEYS if filled[k] != chosen[k]}


def record(values: Mapping[str, Any]) -> dict[str, Any]:
    """What a manifest / metrics meta stores: the protocol name and its overrides."""
    return {"protocol": str(values.get("protocol", "")), "protocol_overrides": overrides(values)}


def manifest_entry(resolved: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """notebook -> record() for every notebook of resolved params that has a `protocol`."""
    return {nb: record(sec) for nb, sec in (resolved.get("notebooks") or {}).items()
            if isinstance(sec, Mapping) and "protocol" in sec}


# ---------------------------------------------------------------------------------------------
# Marking rows not run under `paper`


def deviations(meta: Mapping[str, Any], benchmark: str = "") -> list[str]:
    """Why a benchmark's result is not under the paper's protocol, from its metrics.json meta.

    Returns short tags: "protocol quick" (or "protocol not recorded" for older runs),
    "subsampled", "shorter context" (max_context below the model's real context), "shorter chains"
    (CoT budget below paper's), "test split" (MMLU scored on test, not validation). [] = paper."""
    tags: list[str] = []
    name = meta.get("protocol")
    if name is None:
        tags.append("protocol not recorded")
    elif name != PAPER:
        tags.append(f"protocol {name}")
    if meta.get("subsampled") or meta.get("n_per_subtask") or meta.get("n_per_subtask_cot"):
        tags.append("subsampled")
    model_ctx, used_ctx = meta.get("model_context"), meta.get("max_context")
    if isinstance(model_ctx, int) and isinstance(used_ctx, int) and used_ctx < model_ctx:
        tags.append("shorter context")
    budget = meta.get("max_new_tokens_cot")
    has_cot = any(s in ("cot", "zs_cot", "cot_sc") for s in meta.get("settings") or ())
    if has_cot and isinstance(budget, int) and budget < get(PAPER)["max_new_tokens_cot"]:
        tags.append("shorter chains")
    if benchmark == "mmlu" and meta.get("split") == "test":
        tags.append("test split")
    return tags


def run_deviations(metrics: Mapping[str, Any], benchmarks: Sequence[str]) -> list[str]:
    """deviations() of every evaluated benchmark of one metrics.json, as "bench: tag" (sorted)."""
    out: list[str] = []
    for bench in benchmarks:
        meta = (metrics.get(bench) or {}).get("meta")
        if isinstance(meta, Mapping):
            out += [f"{bench}: {t}" for t in deviations(meta, bench)]
    return out


# ---------------------------------------------------------------------------------------------
# The measurement behind the paper protocol's CoT budget


def exemplar_chains(data_root: str | Path) -> list[tuple[str, str]]:
    """(source, chain) of every official CoT exemplar: the text after "A: " of each block of the
    BBH cot-prompts/*.txt and of mmlu-cot.json under an offline mirror root."""
    from flan_nb.eval import benchmark_schema as schema

    root = Path(data_root)
    chains: list[tuple[str, str]] = []
    for path in sorted((root / "bbh" / "cot-prompts").glob("*.txt")):
        prompt = schema.parse_bbh_cot_prompt(path.read_text(encoding="utf-8"), str(path))
        for k, block in enumerate(prompt.cot_blocks, 1):
            chains.append((f"bbh/{path.stem}#{k}", block[block.index("\nA: ") + 4:]))
    cot = json.loads((root / "mmlu" / "mmlu-cot.json").read_text(encoding="utf-8"))
    for subject, text in cot.items():
        _, blocks, _ = schema.split_cot_prompt(text, f"mmlu-cot.json[{subject}]")
        for k, block in enumerate(blocks, 1):
            chains.append((f"mmlu/{subject}#{k}", block[block.find("\nA: ") + 4:]))
    return chains


def measure_exemplar_chains(data_root: str | Path, tokenizer: Any) -> list[dict[str, Any]]:
    """Every official exemplar chain with its length in `tokenizer` tokens and in words, longest
    first (the measurement documented in protocols.yaml)."""
    rows = [{"source": src, "tokens": len(tokenizer(chain, add_special_tokens=False)["input_ids"]),
             "words": len(chain.split())} for src, chain in exemplar_chains(data_root)]
    return sorted(rows, key=lambda r: -r["tokens"])
