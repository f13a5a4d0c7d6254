"""The authors' rendered Flan Collection exports (issue 11 part 6): loader, validation, preset.

Fixtures in tests/fixtures/flan_exports/<submix>/ are shaped like the hub records
({inputs, targets, task_source, task_name, template_type}); the text is ours. flan2021 line 4 lacks
`targets`, line 7 repeats line 5 up to whitespace; niv2 holds an MMLU task (685); cot and dialog
hold input-inversion (_ii) tasks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flan_nb.data import flan_exports, mixing
from flan_nb.data.mixture_io import MixingError
from flan_nb.data.mixture_plan import load_preset
from flan_nb.data.rows import DataFormatError

FIXTURES = Path(__file__).parent / "fixtures"
EXPORTS = FIXTURES / "flan_exports"
ENTRY = {e.submix: e for e in flan_exports.parse_exports(load_preset("flan_exports_proportion_b").exports, "test")}


def _cfg(**over) -> mixing.MixingParams:
    base = dict(seed=0, preset="flan_exports_proportion_b", num_examples=400, rates={}, caps={},
                fs_fraction=0.5, opt_fraction=0.5, cot_fraction=0.5, max_exemplars=2, max_input_tokens=512,
                fill_fraction=0.0, tokenizer="whitespace", allow_missing=False, synthetic_examples_per_family=60,
                max_examples_per_task=0, contamination=False, workers=1, data_root=str(FIXTURES), run_dir="",
                params_file="")
    base.update(over)
    return mixing.MixingParams(**base)


def _run(tmp_path, monkeypatch):
    from flan_nb import runs

    monkeypatch.setenv("FLAN_NB_SCRATCH", str(tmp_path / "run"))
    monkeypatch.setenv("FLAN_NB_ARTIFACTS", str(tmp_path / "artifacts"))
    return runs.open_run("", notebook="01_data_mixing")


def test_presets_map_every_export_to_a_paper_collection():
    for name, rates in (("flan_exports_proportion_b", {"muffin": 0.46, "t0sf": 0.279, "cot": 0.018, "niv2": 0.242}),
                        ("flan_exports_proportion_a", {"muffin": 0.52, "t0sf": 0.15, "cot": 0.03, "niv2": 0.30})):
        preset = load_preset(name)
        entries = {e.submix: e.collection for e in flan_exports.parse_exports(preset.exports, preset.path)}
        assert entries == {"flan2021": "muffin", "dialog": "muffin", "t0": "t0sf", "niv2": "niv2", "cot": "cot"}
        assert preset.rates == pytest.approx(rates)
        assert dict(preset.caps) | {} == {**preset.caps, "muffin": 30000, "t0sf": 20000, "cot": 100000, "niv2": 5000}
        assert all(e.source.startswith("DataProvenanceInitiative/") for e in
                   flan_exports.parse_exports(preset.exports, preset.path))


def test_malformed_row_names_file_and_line_or_is_skipped_and_counted():
    with pytest.raises(DataFormatError, match=r"flan2021/train\.jsonl line 4: record lacks field\(s\) targets"):
        flan_exports.load_export(ENTRY["flan2021"], FIXTURES, on_bad_rows="raise")
    stats: dict = {}
    with pytest.warns(UserWarning, match="skipped 1 malformed row"):
        by_task, report = flan_exports.load_export(ENTRY["flan2021"], FIXTURES, on_bad_rows="skip", stats=stats)
    assert stats["bad_rows"] == 1 and "line 4" in stats["bad_examples"][0]
    assert report["rows_read"] == 7  # 8 lines, 1 bad
    assert report["duplicates_dropped"] == {"wmt14_translate/fr-en:1.0.0": 1}  # line 7 = line 5 up to spaces
    assert sorted(by_task) == ["bool_q:1.0.0", "glue/cola:2.0.0", "wmt14_translate/fr-en:1.0.0"]
    row = by_task["glue/cola:2.0.0"][0]
    assert set(row) >= {"task", "inputs", "targets", "format", "cot", "template_id", "example_id"}
    assert {r["format"] for r in by_task["glue/cola:2.0.0"]} == {"zs_opt", "zs_noopt", "fs_opt"}
    assert row["cot"] is False and row["template_id"].startswith("flan_export/flan2021/")


@pytest.mark.parametrize("record, message", [
    ({"inputs": "x y", "targets": "z", "task_source": "T0", "task_name": "a", "template_type": "zs_opt"},
     "task_source 'T0' does not belong in the flan2021 export"),
    ({"inputs": "x y", "targets": "z", "task_source": "Flan2021", "task_name": "a", "template_type": "zero"},
     "template_type 'zero' is not one of"),
    ({"inputs": " ", "targets": "z", "task_source": "Flan2021", "task_name": "a", "template_type": "zs_opt"},
     "field `inputs` is empty"),
    ({"inputs": "x", "targets": 3, "task_source": "Flan2021", "task_name": "a", "template_type": "zs_opt"},
     "field `targets` must be a string"),
    (["not", "a", "record"], "must be a JSON object"),
])
def test_record_validation(record, message):
    with pytest.raises(TypeError, match=message):
        flan_exports.to_row(record, ENTRY["flan2021"], "id")


def test_template_type_without_underscore_is_normalized():
    rec = {"inputs": "x", "targets": "z", "task_source": "flan2021", "task_name": "a", "template_type": "FSNOOPT"}
    assert flan_exports.to_row(rec, ENTRY["flan2021"], "id")["format"] == "fs_noopt"


def test_parquet_json_list_and_jsonl_read_the_same_records(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = [json.loads(x) for x in (EXPORTS / "t0" / "train.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(lines), tmp_path / "train-00000-of-00001.parquet")
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "part.json").write_text(json.dumps(lines))
    want = flan_exports.load_export(ENTRY["t0"], FIXTURES)[0]
    for src in (tmp_path / "train-00000-of-00001.parquet", tmp_path / "list"):
        entry = flan_exports.ExportSource("t0", str(src), "T0", "t0sf")
        got = flan_exports.load_export(entry, None)[0]
        assert {t: [(r["inputs"], r["targets"], r["format"]) for r in rows] for t, rows in got.items()} == \
               {t: [(r["inputs"], r["targets"], r["format"]) for r in rows] for t, rows in want.items()}


def test_max_rows_per_task_is_a_seeded_sample_independent_of_file_order(tmp_path):
    recs = [{"inputs": f"question number {i}", "targets": str(i), "task_source": "T0", "task_name": "big",
             "template_type": "zs_noopt"} for i in range(50)]
    for name, order in (("a", recs), ("b", recs[::-1])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.jsonl").write_text("\n".join(json.dumps(r) for r in order))
    pick = {n: [r["targets"] for r in flan_exports.load_export(
        flan_exports.ExportSource("t0", str(tmp_path / n), "T0", "t0sf"), None, seed=3,
        max_rows_per_task=10)[0]["big"]] for n in ("a", "b")}
    assert pick["a"] == pick["b"] and len(pick["a"]) == 10 and len(set(pick["a"])) == 10
    other = flan_exports.load_export(flan_exports.ExportSource("t0", str(tmp_path / "a"), "T0", "t0sf"), None,
                                     seed=4, max_rows_per_task=10)[0]["big"]
    assert [r["targets"] for r in other] != pick["a"]


def test_hub_id_is_refused_clearly_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"'DataProvenanceInitiative/niv2_submix_original' is not on this "
                                                r"machine and the hub is offline.*flan_exports/niv2"):
        flan_exports.load_export(ENTRY["niv2"], None)


def test_build_mixture_from_exports_skips_our_templates(tmp_path, monkeypatch):
    import datasets

    run = _run(tmp_path, monkeypatch)
    with pytest.warns(UserWarning, match="skipped 1 malformed row"):
        manifest = mixing.build_mixture(_cfg(), run, progress=False)
    ds = datasets.load_from_disk(run.output("mixture_path"))
    assert len(ds) == 400 and set(ds["collection"]) == {"muffin", "t0sf", "niv2", "cot"}
    source = {}
    for sub in EXPORTS.iterdir():
        for f in sub.iterdir():
            text = f.read_text()
            recs = json.loads(text) if f.suffix == ".json" else [json.loads(x) for x in text.splitlines()]
            source.update({(r["inputs"], r.get("targets")): r["template_type"] for r in recs})
    for row in ds.select(range(60)):
        assert source[(row["inputs"], row["targets"])] == row["format"]  # the authors' text, untouched
        assert row["template_id"].startswith("flan_export/") and row["cot"] == (row["collection"] == "cot")
    assert "task685_mmmlu_answer_generation_astronomy" not in set(ds["task"])
    assert not {t for t in ds["task"] if t.endswith("_ii")}
    assert manifest["hygiene"]["excluded_by_pattern"] == ["cot_gsm8k_ii", "wiki_dialog_ii"]
    assert manifest["hygiene"]["niv2_mmlu_dropped_count"] == 1
    assert manifest["loading"]["bad_rows"] == 1 and manifest["duplicates_dropped"] == {"wmt14_translate/fr-en:1.0.0": 1}
    coll = manifest["per_collection"]
    assert coll["muffin"]["planned_fraction"] == pytest.approx(0.46 / 0.999)
    assert coll["muffin"]["tasks"] == 5  # 3 flan2021 + qrecc + wiki_dialog
    assert not manifest["partial"] and run.read_metrics()["mixing"]["preset"] == "flan_exports_proportion_b"


def test_missing_export_is_an_error_unless_allowed(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "flan_exports", root / "flan_exports", ignore=shutil.ignore_patterns("niv2"))
    run = _run(tmp_path, monkeypatch)
    with pytest.raises(MixingError, match=r"(?s)collection niv2: no loadable task.*hub is offline.*: flan_exports/niv2"):
        mixing.build_mixture(_cfg(data_root=str(root)), run, progress=False)
    with pytest.warns(UserWarning, match="PARTIAL"):
        manifest = mixing.build_mixture(_cfg(data_root=str(root), allow_missing=True), run, progress=False)
    assert manifest["partial"] and "flan_exports/niv2" in manifest["missing"]["tasks"]


def test_bad_exports_entry_names_the_key(tmp_path):
    with pytest.raises(MixingError, match=r"exports\.t0: unknown key\(s\) \['hub'\]"):
        flan_exports.parse_exports({"t0": {"hub": "x", "task_source": "T0", "collection": "t0sf"}}, "p.yaml")
