"""The task registry: counts, lookups, coverage, and that the committed files match the generator."""

from __future__ import annotations

import json

import pytest

from flan_nb.data import registry


def test_counts_match_the_paper_except_the_documented_niv2_gap():
    reg = registry.load_registry()
    counts = reg.counts()
    assert counts["cot"] == 9
    assert counts["muffin"] == 80
    assert counts["t0sf"] == 193
    # paper: 1,554; the released metadata gives 1,556 after the MMLU filter (see registry docstring)
    assert counts["niv2"] == 1556
    assert counts["cot"] + counts["muffin"] + counts["t0sf"] == 282
    held = [t for t in reg.select("niv2", include_held_out=True) if t.held_out]
    assert len(held) == 57
    assert all(registry.niv2_task_number(t.id) in registry.NIV2_MMLU_IDS for t in held)


def test_niv2_keeps_the_papers_dataset_and_category_counts():
    tasks = registry.load_registry().select("niv2")
    assert len({t.dataset for t in tasks}) == 372
    assert len({t.category for t in tasks}) == 108


def test_every_task_has_the_metadata_fields():
    reg = registry.load_registry()
    for t in reg:
        assert t.collection in registry.COLLECTIONS
        assert t.id and t.category and t.template_set
        assert isinstance(t.held_out, bool)
        assert isinstance(t.source, dict)


def test_unknown_task_lists_close_names():
    reg = registry.load_registry()
    with pytest.raises(registry.UnknownNameError, match="cot_gsm8k"):
        reg.get("cot_gsm8")
    with pytest.raises(registry.UnknownNameError, match="muffin"):
        reg.select("mufin")


def test_synthetic_entries_come_from_the_synthetic_suite():
    from flan_nb.data import synthetic

    reg = registry.load_registry()
    train = {t.dataset for t in reg.select("synthetic")}
    assert train == set(synthetic.training_families())
    held = {t.dataset for t in reg.select("synthetic", include_held_out=True) if t.held_out}
    assert held == set(synthetic.held_out_families())


def test_template_sets_exist():
    from flan_nb.data import templates

    available = set(templates.available_template_sets())
    missing = {t.template_set for t in registry.load_registry()} - available
    assert not missing


def test_coverage_without_data_root_marks_only_synthetic_available():
    cov = registry.coverage(None)
    assert len(cov) == len(registry.load_registry())
    assert set(cov.loc[cov["available"], "collection"]) == {"synthetic"}


def test_coverage_says_which_muffin_tasks_no_loader_can_read():
    cov = registry.coverage(None)
    muffin = cov[cov.collection == "muffin"].set_index("id")["how"]
    unreadable = set(muffin[muffin.isin(["missing", "no hub mapping"])].index)
    assert unreadable == {
        "story_cloze", "newsroom", "opinion_abstracts_idebate", "opinion_abstracts_rotten_tomatoes",
        "para_crawl_enes", "wiki_dialog", "dr_repair_error_comments", "dr_repair_line_numbers",
        "dr_repair_no_errors", "dr_repair_plain_code", "qrecc", "task_master",
        "unified_qa_science_inst"}
    assert (muffin == "hub only").sum() == 67


def test_coverage_with_the_mirror(data_root):
    cov = registry.coverage(data_root)
    avail = cov[cov["available"] & ~cov["held_out"]]
    by = avail.groupby("collection")["id"].count().to_dict()
    assert by["cot"] == 7  # esnli and qed are not in the mirror
    assert by["niv2"] == 4
    assert by["muffin"] == 10
    assert by["t0sf"] == 2
    assert set(cov.loc[(cov.collection == "cot") & ~cov.available, "id"]) == {"stream_esnli", "stream_qed"}
    table = registry.coverage_summary(cov)
    assert table.loc["niv2", "total"] == 1556


def test_committed_registry_equals_generator_output(data_root, tmp_path):
    report = registry.generate(data_root, tmp_path)
    assert report["niv2"]["hyphen_aliases_dropped"] == 41
    assert report["niv2"]["gap_vs_paper"] == 2
    assert report["t0sf_unmatched_templates"] == []
    for name in ("cot", "muffin", "t0sf", "niv2"):
        fresh = json.loads((tmp_path / f"{name}.json").read_text())
        committed = json.loads((registry.REGISTRY_DIR / f"{name}.json").read_text())
        assert fresh == committed, f"{name}.json is stale: rerun registry.generate"
