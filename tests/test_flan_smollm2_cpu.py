"""The showcase params file, tiny: SmolLM2 evaluated before, Flan-finetuned, evaluated after,
compared with paired bootstrap intervals, through the runner (params/flan_smollm2_cpu_tiny.yaml).

~4-5 minutes on the 2-core CI machine (ten notebooks, each loading the 135M model): the same
notebooks, model, mixture and protocol as params/flan_smollm2_cpu.yaml on a handful of items."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flan_nb import config, models, pipeline

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"mmlu": ("direct", "cot"), "bbh": ("direct", "cot"), "tydiqa": ("direct",),
            "mgsm": ("cot",)}


def _item_ids(run_dir: Path, bench: str) -> dict[str, list[str]]:
    rows = [json.loads(line) for line in
            (run_dir / "predictions" / f"{bench}.jsonl").read_text().splitlines()]
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["setting"], []).append(r["item_id"])
    return out


def test_flan_smollm2_cpu_tiny_end_to_end(data_root, tmp_path):
    try:
        models.smollm2_path()
    except models.ModelSpecError as exc:
        pytest.skip(str(exc))
    params = ROOT / "params" / "flan_smollm2_cpu_tiny.yaml"
    run_dir = pipeline.run(params, results_root=tmp_path / "results", log=lambda *_: None)

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    order = list(config.load_params_file(params)["notebooks"])
    assert list(manifest["notebooks"]) == order
    for key in order:
        assert manifest["notebooks"][key]["seconds"] > 0
        assert (run_dir / f"{key}.ipynb").is_file()

    before = json.loads((run_dir / "before" / "metrics.json").read_text())
    after = json.loads((run_dir / "metrics.json").read_text())
    for bench, settings in SETTINGS.items():
        for setting in settings:
            assert 0.0 <= before[bench][setting]["score"] <= 100.0
            assert before[bench][setting]["n"] == after[bench][setting]["n"] > 0
        # exactly the same items on both sides, and two different models
        assert _item_ids(run_dir / "before", bench) == _item_ids(run_dir, bench)
        assert before[bench]["meta"]["model"] != after[bench]["meta"]["model"]
        assert before[bench]["meta"]["protocol_overrides"] == after[bench]["meta"]["protocol_overrides"]
    assert isinstance(before["normalized_average"]["value"], float)
    assert isinstance(after["normalized_average"]["value"], float)

    # the finetune: packed decoder-only rows, loss on targets only
    assert after["train"]["steps"] == 2
    log = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 2 and all(0 < r["target_tokens"] < r["non_pad_tokens"] for r in steps)

    # the comparison: every benchmark/setting row with its interval, and the CSV tables
    rows = after["before_after"]["rows"]
    for bench, settings in SETTINGS.items():
        for setting in settings:
            row = rows[f"{bench}.{setting}"]
            assert row["diff"] == pytest.approx(row["after"] - row["before"])
            assert row["ci_low"] <= row["diff"] <= row["ci_high"]
    assert (run_dir / "tables" / "before_after.csv").is_file()
    assert (run_dir / "tables" / "before_after_subtasks.csv").is_file()
