"""Packers and collation: lengths, provenance, efficiency, truncation, tensor layout."""

from __future__ import annotations

import random

import pytest
import torch

from flan_nb.train import packing
from flan_nb.train.packing import IGNORE_INDEX, PackingError


def random_examples(n: int, *, max_in: int, max_tgt: int, seed: int = 0):
    rng = random.Random(seed)
    return [([rng.randrange(3, 250) for _ in range(rng.randint(1, max_in))],
             [rng.randrange(3, 250) for _ in range(rng.randint(1, max_tgt))]) for _ in range(n)]


@pytest.mark.parametrize("method", packing.METHODS)
def test_seq2seq_rows_never_exceed_lengths_and_hold_every_example_once(method):
    examples = random_examples(300, max_in=60, max_tgt=20, seed=1)
    rows = packing.pack(examples, kind="seq2seq", input_len=64, target_len=24, method=method)
    seen = sorted(i for r in rows for i in r.example_indices)
    assert seen == list(range(len(examples)))
    for row in rows:
        assert row.used_input <= 64 and row.used_target <= 24
        for idx, (inp, tgt) in zip(row.example_indices, row.segments):
            assert (inp, tgt) == examples[idx]  # provenance points at the right example
    if method == "none":
        assert len(rows) == len(examples)


@pytest.mark.parametrize("method", packing.METHODS)
def test_causal_rows_never_exceed_length(method):
    examples = random_examples(300, max_in=50, max_tgt=30, seed=2)
    rows = packing.pack(examples, kind="causal", input_len=96, method=method)
    assert sorted(i for r in rows for i in r.example_indices) == list(range(len(examples)))
    assert all(r.used_input <= 96 and r.target_len is None for r in rows)


@pytest.mark.parametrize("kind", packing.KINDS)
def test_best_fit_is_at_least_as_efficient_as_first_fit(kind):
    examples = random_examples(400, max_in=70, max_tgt=30, seed=3)
    kw = dict(kind=kind, input_len=128, target_len=32 if kind == "seq2seq" else None)
    best = packing.pack(examples, method="best_fit", **kw)
    first = packing.pack(examples, method="first_fit", **kw)
    none = packing.pack(examples, method="none", **kw)
    e_best, e_first = packing.packing_efficiency(best), packing.packing_efficiency(first)
    assert e_best >= e_first
    assert e_first > 2 * packing.packing_efficiency(none)
    assert len(best) <= len(first) < len(none)


def test_packing_efficiency_is_the_non_pad_fraction():
    rows = packing.pack([([1, 2, 3], [4]), ([5], [6, 7])], kind="seq2seq", input_len=5,
                        target_len=4)
    assert len(rows) == 1
    assert packing.packing_efficiency(rows) == pytest.approx((4 + 3) / (5 + 4))
    causal = packing.pack([([1, 2, 3], [4]), ([5], [6, 7])], kind="causal", input_len=10)
    assert packing.packing_efficiency(causal) == pytest.approx(7 / 10)
    assert packing.packing_efficiency([]) == 0.0


def test_best_fit_takes_the_tightest_row_first_fit_the_first():
    # example sizes (input + 1 target token) 8, 8, 2, 4, 4, 5 in rows of 11. Placed longest
    # first, the 2-token example comes last: rows then have 3, 3, 2 and 7 tokens free.
    ex = [([1] * n, [9]) for n in (7, 7, 1, 3, 3, 4)]
    first = packing.pack(ex, kind="causal", input_len=11, method="first_fit")
    best = packing.pack(ex, kind="causal", input_len=11, method="best_fit")
    assert [sorted(r.example_indices) for r in first] == [[0, 2], [1], [3, 5], [4]]
    assert [sorted(r.example_indices) for r in best] == [[0], [1], [2, 3, 5], [4]]


def test_truncate_counts_and_cuts_seq2seq():
    ex = [([1] * 10, [2] * 3), ([1] * 3, [2] * 9), ([1] * 4, [2] * 4)]
    rows = packing.pack(ex, kind="seq2seq", input_len=6, target_len=5, truncation="truncate")
    assert packing.count_truncated(rows) == 2
    stored = {i: seg for r in rows for i, seg in zip(r.example_indices, r.segments)}
    assert stored[0] == ([1] * 6, [2] * 3)
    assert stored[1] == ([1] * 3, [2] * 5)
    assert stored[2] == ([1] * 4, [2] * 4)
    assert packing.pack_stats(rows)["truncated"] == 2


def test_truncate_causal_keeps_target_and_prompt_tail():
    inp, tgt = list(range(10, 30)), [1, 2, 3]
    (row,) = packing.pack([(inp, tgt)], kind="causal", input_len=8, truncation="truncate")
    assert row.segments[0] == (inp[-5:], tgt) and row.truncated == [True]
    (row,) = packing.pack([([7, 8], list(range(50)))], kind="causal", input_len=8,
                          truncation="truncate")
    assert row.segments[0] == ([8], list(range(7)))  # >= 1 prompt token survives


def test_too_long_raises_under_error_policy_naming_the_example():
    ex = [([1] * 3, [2]), ([1] * 9, [2])]
    with pytest.raises(PackingError, match="example 1"):
        packing.pack(ex, kind="seq2seq", input_len=8, target_len=4)
    with pytest.raises(PackingError, match="example 1"):
        packing.pack(ex, kind="causal", input_len=8)


@pytest.mark.parametrize(("ex", "kind", "match"), [
    ([([1], [])], "seq2seq", "empty target"),
    ([([], [1])], "seq2seq", "empty input"),
    ([([], [1])], "causal", "prompt token"),
])
def test_degenerate_examples_are_rejected(ex, kind, match):
    with pytest.raises(PackingError, match=match):
        packing.pack(ex, kind=kind, input_len=8, target_len=4)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(kind="encoder"), "kind"),
    (dict(kind="causal", method="worst_fit"), "method"),
    (dict(kind="causal", truncation="drop"), "truncation"),
    (dict(kind="seq2seq", target_len=None), "target_len"),
])
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(PackingError, match=match):
        packing.pack([([1], [2])], **{"input_len": 8, **kwargs})


def test_collate_seq2seq_layout():
    ex = [([11, 12, 13], [21, 22, 23]), ([14, 15], [24, 25])]
    rows = packing.pack(ex, kind="seq2seq", input_len=7, target_len=6, method="first_fit")
    assert len(rows) == 1 and rows[0].example_indices == [0, 1]
    b = packing.collate(rows, "seq2seq", decoder_start_token_id=0, pad_token_id=0)
    assert b["input_ids"].tolist() == [[11, 12, 13, 14, 15, 0, 0]]
    assert b["encoder_segment_ids"].tolist() == [[1, 1, 1, 2, 2, 0, 0]]
    assert b["encoder_positions"].tolist() == [[0, 1, 2, 0, 1, 0, 0]]
    assert b["labels"].tolist() == [[21, 22, 23, 24, 25, IGNORE_INDEX]]
    # each segment restarts with the decoder start token: no teacher forcing across examples
    assert b["decoder_input_ids"].tolist() == [[0, 21, 22, 0, 24, 0]]
    assert b["decoder_segment_ids"].tolist() == [[1, 1, 1, 2, 2, 0]]
    assert b["decoder_positions"].tolist() == [[0, 1, 2, 0, 1, 0]]
    assert all(v.dtype == torch.long for v in b.values())


def test_collate_causal_layout_and_trim():
    ex = [([11, 12], [21]), ([13], [22, 23])]
    rows = packing.pack(ex, kind="causal", input_len=9, method="first_fit")
    b = packing.collate(rows, "causal", pad_token_id=0)
    assert b["input_ids"].tolist() == [[11, 12, 21, 13, 22, 23, 0, 0, 0]]
    assert b["labels"].tolist() == [[-100, -100, 21, -100, 22, 23, -100, -100, -100]]
    assert b["segment_ids"].tolist() == [[1, 1, 1, 2, 2, 2, 0, 0, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 0, 0, 0]]
    trimmed = packing.collate(rows, "causal", trim=True)
    assert trimmed["input_ids"].shape == (1, 6)


def test_collate_rejects_mixed_rows():
    a = packing.pack([([1], [2])], kind="causal", input_len=4)
    b = packing.pack([([1], [2])], kind="causal", input_len=5)
    with pytest.raises(PackingError, match="one shape"):
        packing.collate(a + b, "causal")
    with pytest.raises(PackingError, match="packed for kind"):
        packing.collate(a, "seq2seq")
    with pytest.raises(PackingError, match="at least one"):
        packing.collate([], "causal")


def test_collate_unpacked_pads_to_longest_and_adds_2d_masks():
    ex = [([1, 2, 3], [4]), ([5], [6, 7])]
    b = packing.collate_unpacked(ex, "seq2seq")
    assert b["input_ids"].shape == (2, 3) and b["labels"].shape == (2, 2)
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["decoder_attention_mask"].tolist() == [[1, 0], [1, 1]]
    c = packing.collate_unpacked(ex, "causal")
    assert c["input_ids"].shape == (2, 4)
    assert c["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


def test_packing_is_deterministic():
    ex = random_examples(200, max_in=40, max_tgt=10, seed=5)
    one = packing.pack(ex, kind="seq2seq", input_len=64, target_len=16)
    two = packing.pack(ex, kind="seq2seq", input_len=64, target_len=16)
    assert [r.example_indices for r in one] == [r.example_indices for r in two]
