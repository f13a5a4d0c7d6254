"""Mixing: exact plan arithmetic, sampling, determinism, hygiene, format ratios, bad params."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

from flan_nb.data import mixing, registry
from flan_nb.data.registry import Task


def _task(tid: str, collection: str, *, held_out: bool = False, template_set: str = "no_such_set") -> Task:
    return Task(id=tid, collection=collection, dataset=tid, category="c", language="en", source={},
                size=None, license="", held_out=held_out, template_set=template_set)


def _rows(tid: str, n: int, *, options: bool = False, rationale: bool = False) -> list[dict]:
    return [{"task": tid, "inputs": f"{tid} question {i}", "targets": f"answer {i}",
             "rationale": f"because {i}" if rationale else "", "options": ["yes", "no"] if options else [],
             "example_id": f"{tid}:{i}", "source": "test"} for i in range(n)]


def _data() -> list[mixing.TaskData]:
    return [
        mixing.TaskData(_task("m_small", "muffin"), _rows("m_small", 100, options=True)),
        mixing.TaskData(_task("m_big", "muffin"), _rows("m_big", 500)),
        mixing.TaskData(_task("n_one", "niv2"), _rows("n_one", 300)),
        mixing.TaskData(_task("c_one", "cot"), _rows("c_one", 50, rationale=True)),
    ]


RATIOS = mixing.FormatRatios(fs_fraction=0.5, opt_fraction=0.5, cot_fraction=0.5, max_exemplars=2,
                             max_input_tokens=256)


def test_plan_is_examples_proportional_with_caps():
    sizes = {"a": 100, "b": 50_000, "c": 10, "d": 9_000}
    coll = {"a": "muffin", "b": "muffin", "c": "cot", "d": "niv2"}
    p = mixing.plan(sizes, coll, {"muffin": 0.5, "cot": 0.2, "niv2": 0.3},
                    {"muffin": 30_000, "cot": 100_000, "niv2": 5_000}, 1000)
    assert p["capped"] == {"a": 100, "b": 30_000, "c": 10, "d": 5_000}
    assert math.isclose(p["probs"]["a"], 0.5 * 100 / 30_100)
    assert math.isclose(p["probs"]["b"], 0.5 * 30_000 / 30_100)
    assert math.isclose(p["probs"]["c"], 0.2)
    assert math.isclose(p["probs"]["d"], 0.3)
    assert math.isclose(sum(p["probs"].values()), 1.0)
    assert math.isclose(p["expected"]["a"], 1000 * 0.5 * 100 / 30_100)


def test_plan_renormalizes_when_a_collection_has_no_tasks():
    p = mixing.plan({"a": 10}, {"a": "muffin"}, {"muffin": 0.46, "t0sf": 0.54}, {"muffin": 30_000}, 10)
    assert p["missing_collections"] == ["t0sf"]
    assert p["probs"] == {"a": 1.0}


def test_rates_normalize_with_warning_and_reject_negatives():
    with pytest.warns(UserWarning, match="normalized"):
        rates = mixing.normalize_rates({"muffin": 2, "cot": 2})
    assert rates == {"muffin": 0.5, "cot": 0.5}
    with pytest.raises(mixing.MixingError, match=r"rates\['cot'\] = -0.1 is negative"):
        mixing.normalize_rates({"muffin": 1.1, "cot": -0.1})
    with pytest.raises(registry.UnknownNameError, match="muffin"):
        mixing.normalize_rates({"mufin": 1.0})
    with pytest.raises(mixing.MixingError, match="positive"):
        mixing.normalize_rates({"muffin": 0.0})


def test_presets_load_and_unknown_preset_suggests():
    names = mixing.available_presets()
    for required in ("proportion_a", "proportion_b", "flan2022", "tasks_9", "tasks_89", "tasks_282",
                     "tasks_682", "tasks_1836", "synthetic", "offline_real"):
        assert required in names
        preset = mixing.load_preset(required)
        assert math.isclose(sum(mixing.normalize_rates(preset.rates, tolerance=0.002).values()), 1.0)
    b = mixing.load_preset("proportion_b")
    assert b.rates == {"muffin": 0.46, "t0sf": 0.279, "cot": 0.018, "niv2": 0.242}
    assert b.caps["muffin"] == 30000 and b.caps["t0sf"] == 20000 and b.caps["cot"] == 100000 and b.caps["niv2"] == 5000
    with pytest.raises(registry.UnknownNameError, match="proportion_b"):
        mixing.load_preset("proportion_c")


def test_task_scaling_presets_select_the_paper_counts():
    reg = registry.load_registry()
    counts = {}
    for name in ("tasks_9", "tasks_89", "tasks_282", "tasks_682", "tasks_1836"):
        tasks, hygiene = mixing.select_tasks(mixing.load_preset(name), reg, None)
        counts[name] = len(tasks)
    assert counts == {"tasks_9": 9, "tasks_89": 89, "tasks_282": 282, "tasks_682": 682, "tasks_1836": 1838}
    tasks, _ = mixing.select_tasks(mixing.load_preset("tasks_682"), reg, None)
    niv2 = [t for t in tasks if t.collection == "niv2"]
    ids = [registry.niv2_task_number(t.id) for t in niv2]
    assert ids == sorted(ids) and len(niv2) == 400


def test_niv2_mmlu_filter_reports_exactly_the_dropped_ids():
    tasks = registry.load_registry().select("niv2", include_held_out=True)
    kept, dropped = mixing.niv2_mmlu_filter(tasks)
    numbers = sorted(registry.niv2_task_number(t) for t in dropped)
    assert numbers == [*range(664, 668), *range(685, 738)]
    assert len(dropped) == 57 and len(kept) == 1556
    assert "task706_mmmlu_answer_generation_high_school_mathematics" in dropped
    _, hygiene = mixing.select_tasks(mixing.load_preset("proportion_b"), registry.load_registry(), None)
    assert hygiene["niv2_mmlu_dropped_count"] == 57


def test_held_out_task_is_refused(tmp_path):
    bad = [mixing.TaskData(_task("x", "synthetic", held_out=True), _rows("x", 5))]
    with pytest.raises(mixing.MixingError, match="held out"):
        mixing.mix(bad, rates={"synthetic": 1.0}, caps={"synthetic": 10}, num_examples=5, seed=0,
                   ratios=RATIOS, out_dir=tmp_path, progress=False)


def test_mixture_contract_and_realized_proportions(tmp_path):
    import datasets

    n = 4000
    rates = {"muffin": 0.5, "niv2": 0.3, "cot": 0.2}
    caps = {"muffin": 300, "niv2": 5000, "cot": 100000}
    manifest = mixing.mix(_data(), rates=rates, caps=caps, num_examples=n, seed=3, ratios=RATIOS,
                          out_dir=tmp_path / "mix", progress=False)
    ds = datasets.load_from_disk(str(tmp_path / "mix"))
    assert len(ds) == n
    assert set(ds.column_names) == set(mixing.MIXTURE_COLUMNS)
    assert set(ds["collection"]) == {"muffin", "niv2", "cot"}
    assert set(ds["format"]) <= {"zs_noopt", "zs_opt", "fs_noopt", "fs_opt"}
    realized = {t: v["realized"] for t, v in manifest["per_task"].items()}
    assert sum(realized.values()) == n
    # m_big is capped at 300 -> muffin split 100:300
    expected = {"m_small": n * 0.5 * 100 / 400, "m_big": n * 0.5 * 300 / 400, "n_one": n * 0.3, "c_one": n * 0.2}
    for t, e in expected.items():
        assert manifest["per_task"][t]["planned"] == pytest.approx(e, abs=1e-3)
        sd = math.sqrt(n * (e / n) * (1 - e / n))
        assert abs(realized[t] - e) < 4 * sd, (t, realized[t], e)
    assert manifest["per_collection"]["cot"]["planned_fraction"] == pytest.approx(0.2)
    counts = ds.to_pandas()["task"].value_counts().to_dict()
    assert counts == {t: c for t, c in realized.items() if c}
    assert manifest["per_task"]["c_one"]["epochs"] == pytest.approx(realized["c_one"] / 50, abs=1e-3)
    assert manifest["token_unit"].startswith("whitespace")


def _hash_dir(path: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(path.iterdir()):
        digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()


def test_same_params_give_byte_identical_files(tmp_path):
    kw = {"rates": {"muffin": 0.5, "niv2": 0.3, "cot": 0.2}, "caps": {"muffin": 300, "niv2": 5000, "cot": 100000},
          "num_examples": 1500, "ratios": RATIOS, "progress": False}
    a = mixing.mix(_data(), seed=7, out_dir=tmp_path / "a", **kw)
    b = mixing.mix(_data(), seed=7, out_dir=tmp_path / "b", **kw)
    c = mixing.mix(_data(), seed=8, out_dir=tmp_path / "c", **kw)
    assert _hash_dir(tmp_path / "a") == _hash_dir(tmp_path / "b")
    assert a["fingerprint_sha256"] == b["fingerprint_sha256"] != c["fingerprint_sha256"]


def test_bytes_do_not_depend_on_workers_or_chunking(tmp_path, monkeypatch):
    monkeypatch.setattr(mixing, "CHUNK", 400)  # several chunks and shards on a small mixture
    kw = {"rates": {"muffin": 0.5, "niv2": 0.3, "cot": 0.2}, "caps": {"muffin": 300, "niv2": 5000, "cot": 100000},
          "num_examples": 4100, "ratios": RATIOS, "progress": False, "seed": 11}
    one = mixing.mix(_data(), out_dir=tmp_path / "one", workers=1, **kw)
    two = mixing.mix(_data(), out_dir=tmp_path / "two", workers=2, **kw)
    assert two["format_counts"] == one["format_counts"]
    assert len(one["files"]) == 2  # 10 chunks a shard
    assert _hash_dir(tmp_path / "one") == _hash_dir(tmp_path / "two")


def _formats(tmp_path, ratios, name):
    import datasets

    mixing.mix(_data(), rates={"muffin": 0.5, "niv2": 0.3, "cot": 0.2},
               caps={"muffin": 300, "niv2": 5000, "cot": 100000}, num_examples=800, seed=1,
               ratios=ratios, out_dir=tmp_path / name, progress=False)
    return datasets.load_from_disk(str(tmp_path / name)).to_pandas()


def test_format_ratios_are_respected(tmp_path):
    zs = _formats(tmp_path, mixing.FormatRatios(0.0, 1.0, 0.0, 2, 256), "zs")
    assert set(zs["format"]) == {"zs_opt", "zs_noopt"}
    # opt only where the example has options (m_small); others fall back to noopt
    assert set(zs.loc[zs.task == "m_small", "format"]) == {"zs_opt"}
    assert set(zs.loc[zs.task != "m_small", "format"]) == {"zs_noopt"}
    assert not zs["cot"].any()
    fs = _formats(tmp_path, mixing.FormatRatios(1.0, 0.0, 1.0, 2, 256), "fs")
    assert (fs["format"] == "fs_noopt").all()
    assert fs.loc[fs.collection == "cot", "cot"].all()
    assert not fs.loc[fs.collection != "cot", "cot"].any()  # only CoT data gets CoT formats
    half = _formats(tmp_path, mixing.FormatRatios(0.5, 0.5, 0.5, 2, 256), "half")
    share = half["format"].str.startswith("fs").mean()
    assert 0.4 < share < 0.6
    with pytest.raises(mixing.MixingError, match="fs_fraction"):
        mixing.FormatRatios(1.5, 0.5, 0.5, 2, 256)


def _cfg(**over) -> mixing.MixingParams:
    base = dict(seed=0, preset="synthetic", num_examples=600, rates={}, caps={}, fs_fraction=0.5,
                opt_fraction=0.5, cot_fraction=0.5, max_exemplars=2, max_input_tokens=512,
                fill_fraction=0.0, tokenizer="whitespace", allow_missing=False, synthetic_examples_per_family=60, max_examples_per_task=0, contamination=False,
                workers=1, data_root="", run_dir="", params_file="")
    base.update(over)
    return mixing.MixingParams(**base)


def test_build_mixture_synthetic_needs_no_data(tmp_path, monkeypatch):
    import datasets

    from flan_nb import runs

    monkeypatch.delenv("FLAN_NB_DATA", raising=False)
    monkeypatch.setenv("FLAN_NB_SCRATCH", str(tmp_path / "run"))
    monkeypatch.setenv("FLAN_NB_ARTIFACTS", str(tmp_path / "artifacts"))
    run = runs.open_run("", notebook="01_data_mixing")
    manifest = mixing.build_mixture(_cfg(), run, progress=False)
    path = run.output("mixture_path")
    ds = datasets.load_from_disk(path)
    assert len(ds) == 600 and set(ds["collection"]) == {"synthetic"}
    from flan_nb.data import synthetic

    assert {t.removeprefix("synthetic_") for t in ds["task"]} <= set(synthetic.training_families())
    metrics = run.read_metrics()["mixing"]
    assert metrics["num_examples"] == 600 and metrics["fingerprint_sha256"] == manifest["fingerprint_sha256"]
    assert not manifest["template_fallbacks"]


def test_custom_rates_and_unknown_collection_in_params(tmp_path, monkeypatch):
    monkeypatch.delenv("FLAN_NB_DATA", raising=False)  # CI sets it; this checks the message without
    with pytest.warns(UserWarning, match="normalized"):
        _, rates, _ = mixing.resolve(_cfg(preset="proportion_b", rates={"muffin": 1, "niv2": 1}))
    assert rates == {"muffin": 0.5, "niv2": 0.5}
    with pytest.raises(registry.UnknownNameError, match="niv2"):
        mixing.resolve(_cfg(caps={"nv2": 10}))
    with pytest.raises(FileNotFoundError, match="data_root"):
        mixing.build_mixture(_cfg(preset="offline_real"), object(), progress=False)
