"""Packing tokenized (input, target) examples into fixed-length rows, and collating rows to tensors.

Row layout
- seq2seq: an encoder row of ``input_len`` tokens and a decoder row of ``target_len`` tokens.
  Example k of the row (segment id k, 1-based) puts its input in the encoder row and its target
  in the decoder row; both must fit. Segment 0 = padding.
- causal: one row of ``input_len`` tokens; each example is input followed by target, and only the
  target tokens carry a loss.
Each segment has its own positions 0..len-1 (per-segment RoPE positions for causal models; T5
uses relative offsets, which equal index offsets inside a contiguous segment).

Packers (``METHODS``): first-fit-decreasing, best-fit-decreasing, and ``none`` (one example per
row, the unpacked baseline). Examples are placed longest first; rows come out in creation order,
so the training loop should shuffle rows. For seq2seq the "size" of an example and the slack of
a row are measured in fractions of each capacity, summed over encoder and decoder.

Examples too long for a row: ``truncation="error"`` (default) raises naming the example;
``"truncate"`` cuts and counts (``PackedRow.truncated``, ``count_truncated``):
seq2seq inputs and targets keep their head (as seqio's trim); causal examples keep the whole
target if it fits (else its head) and drop prompt tokens from the *front*, keeping >= 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METHODS = ("best_fit", "first_fit", "none")
KINDS = ("seq2seq", "causal")
TRUNCATION = ("error", "truncate")
IGNORE_INDEX = -100


class PackingError(ValueError):
    """An example that cannot be packed under the given lengths and truncation policy."""


@dataclass
class PackedRow:
    kind: str
    input_len: int                       # encoder capacity (seq2seq) or row length (causal)
    target_len: int | None               # decoder capacity (seq2seq); None for causal
    segments: list[tuple[list[int], list[int]]] = field(default_factory=list)
    example_indices: list[int] = field(default_factory=list)  # index into pack()'s examples
    truncated: list[bool] = field(default_factory=list)

    @property
    def n_segments(self) -> int:
        return len(self.segments)

    @property
    def used_input(self) -> int:
        if self.kind == "causal":
            return sum(len(i) + len(t) for i, t in self.segments)
        return sum(len(i) for i, _ in self.segments)

    @property
    def used_target(self) -> int:
        return 0 if self.kind == "causal" else sum(len(t) for _, t in self.segments)

    @property
    def capacity(self) -> int:
        return self.input_len + (self.target_len or 0)

    @property
    def used(self) -> int:
        return self.used_input + self.used_target


def _check_args(kind: str, input_len: int, target_len: int | None, method: str,
                truncation: str) -> None:
    if kind not in KINDS:
        raise PackingError(f"kind {kind!r} is not one of {KINDS}")
    if method not in METHODS:
        raise PackingError(f"packing method {method!r} is not one of {METHODS}")
    if truncation not in TRUNCATION:
        raise PackingError(f"truncation {truncation!r} is not one of {TRUNCATION}")
    if int(input_len) < (1 if kind == "seq2seq" else 2):
        raise PackingError(f"input_len={input_len} is too small for kind {kind}")
    if kind == "seq2seq" and (target_len is None or int(target_len) < 1):
        raise PackingError(f"seq2seq packing needs target_len >= 1, got {target_len}")


def _fit(idx: int, inp: list[int], tgt: list[int], kind: str, input_len: int,
         target_len: int | None, truncation: str) -> tuple[list[int], list[int], bool]:
    """The example as it will be stored, cut to the row per the truncation policy."""
    if not tgt:
        raise PackingError(f"example {idx}: empty target (targets carry the loss; add EOS)")
    if not inp:
        raise PackingError(
            f"example {idx}: empty input; " + ("the decoder would attend to no encoder token"
                                               if kind == "seq2seq" else
                                               "a causal target needs >= 1 prompt token "
                                               "(e.g. BOS) to be predicted from"))
    if kind == "seq2seq":
        assert target_len is not None
        if len(inp) <= input_len and len(tgt) <= target_len:
            return inp, tgt, False
        if truncation == "error":
            raise PackingError(f"example {idx}: input {len(inp)} / target {len(tgt)} tokens "
                               f"exceed input_len={input_len} / target_len={target_len} "
                               "(truncation='error')")
        return inp[:input_len], tgt[:target_len], True
    if len(inp) + len(tgt) <= input_len:
        return inp, tgt, False
    if truncation == "error":
        raise PackingError(f"example {idx}: input {len(inp)} + target {len(tgt)} tokens exceed "
                           f"the row length input_len={input_len} (truncation='error')")
    tgt = tgt[:input_len - 1]
    keep = input_len - len(tgt)
    return inp[len(inp) - keep:], tgt, True


def pack(examples: Sequence[tuple[Sequence[int], Sequence[int]]], *, kind: str, input_len: int,
         target_len: int | None = None, method: str = "best_fit",
         truncation: str = "error") -> list[PackedRow]:
    """Pack (input_ids, target_ids) examples into rows; see the module doc for the layout."""
    _check_args(kind, input_len, target_len, method, truncation)
    input_len = int(input_len)
    target_len = int(target_len) if kind == "seq2seq" else None
    items = [_fit(i, list(inp), list(tgt), kind, input_len, target_len, truncation)
             for i, (inp, tgt) in enumerate(examples)]
    n = len(items)
    if n == 0:
        return []
    if kind == "seq2seq":
        size_a = np.array([len(i) for i, _, _ in items], dtype=np.int64)
        size_b = np.array([len(t) for _, t, _ in items], dtype=np.int64)
        cap_b = target_len
    else:
        size_a = np.array([len(i) + len(t) for i, t, _ in items], dtype=np.int64)
        size_b = np.zeros(n, dtype=np.int64)
        cap_b = 0
    rows: list[PackedRow] = []

    def place(row_id: int, idx: int) -> None:
        if row_id == len(rows):
            rows.append(PackedRow(kind, input_len, target_len))
        inp, tgt, cut = items[idx]
        rows[row_id].segments.append((inp, tgt))
        rows[row_id].example_indices.append(idx)
        rows[row_id].truncated.append(cut)

    if method == "none":
        for idx in range(n):
            place(idx, idx)
        return rows

    weight_b = 1.0 / cap_b if cap_b else 0.0
    key = size_a / input_len + size_b * weight_b
    order = np.argsort(-key, kind="stable")  # decreasing; ties keep input order
    rem_a = np.empty(n, dtype=np.int64)
    rem_b = np.empty(n, dtype=np.int64)
    n_rows = 0
    for idx in order.tolist():
        a, b = int(size_a[idx]), int(size_b[idx])
        chosen = n_rows
        if n_rows:
            fits = (rem_a[:n_rows] >= a) & (rem_b[:n_rows] >= b)
            if method == "first_fit":
                first = int(np.argmax(fits))
                if fits[first]:
                    chosen = first
            else:
                slack = (rem_a[:n_rows] - a) / input_len + (rem_b[:n_rows] - b) * weight_b
                slack = np.where(fits, slack, np.inf)
                best = int(np.argmin(slack))
                if fits[best]:
                    chosen = best
        if chosen == n_rows:
            rem_a[n_rows], rem_b[n_rows] = input_len, cap_b
            n_rows += 1
        rem_a[chosen] -= a
        rem_b[chosen] -= b
        place(chosen, idx)
    return rows


def packing_efficiency(rows: Sequence[PackedRow]) -> float:
    """Non-pad fraction of all token slots (encoder + decoder slots for seq2seq)."""
    slots = sum(r.capacity for r in rows)
    return sum(r.used for r in rows) / slots if slots else 0.0


def count_truncated(rows: Sequence[PackedRow]) -> int:
    return sum(sum(r.truncated) for r in rows)


def pack_stats(rows: Sequence[PackedRow]) -> dict[str, Any]:
    """Numbers worth logging about a packing: rows, examples, truncated, efficiency."""
    n_ex = sum(r.n_segments for r in rows)
    return {"rows": len(rows), "examples": n_ex, "truncated": count_truncated(rows),
            "examples_per_row": n_ex / len(rows) if rows else 0.0,
            "efficiency": packing_efficiency(rows)}


# ---------------------------------------------------------------------------------------------
# Collation


def _check_rows(rows: Sequence[PackedRow], kind: str) -> None:
    if not rows:
        raise PackingError("collate needs at least one row")
    if kind not in KINDS:
        raise PackingError(f"kind {kind!r} is not one of {KINDS}")
    first = rows[0]
    for i, row in enumerate(rows):
        if row.kind != kind:
            raise PackingError(f"row {i} was packed for kind {row.kind!r}, collating as {kind!r}")
        if (row.input_len, row.target_len) != (first.input_len, first.target_len):
            raise PackingError(f"row {i} has lengths {(row.input_len, row.target_len)}, row 0 "
                               f"{(first.input_len, first.target_len)}; a batch needs one shape")


def collate(rows: Sequence[PackedRow], kind: str, *, pad_token_id: int = 0,
            decoder_start_token_id: int = 0, trim: bool = False) -> dict[str, Any]:
    """Rows -> LongTensors of shape (rows, length).

    seq2seq: input_ids, encoder_segment_ids, encoder_positions, decoder_input_ids (each segment
    shifted right and started with ``decoder_start_token_id``, T5's is 0 = pad), labels (-100 on
    pad), decoder_segment_ids, decoder_positions.
    causal: input_ids, labels (= input_ids on target tokens, -100 elsewhere; HF convention, i.e.
    labels[t] is predicted from position t-1 — a segment never starts with a target token, so
    no prediction crosses a boundary), segment_ids, position_ids.
    ``trim`` drops trailing all-pad columns (exact, since pads are masked; saves compute).
    These batches must go through ``packed_forward``, not ``model(**batch)``.
    """
    import torch

    _check_rows(rows, kind)
    n = len(rows)
    a_len = rows[0].input_len
    if trim:
        a_len = max(1, max(r.used_input for r in rows))
    ids = np.full((n, a_len), pad_token_id, dtype=np.int64)
    seg = np.zeros((n, a_len), dtype=np.int64)
    pos = np.zeros((n, a_len), dtype=np.int64)
    if kind == "causal":
        labels = np.full((n, a_len), IGNORE_INDEX, dtype=np.int64)
        for r, row in enumerate(rows):
            at = 0
            for s, (inp, tgt) in enumerate(row.segments, start=1):
                length = len(inp) + len(tgt)
                ids[r, at:at + len(inp)] = inp
                ids[r, at + len(inp):at + length] = tgt
                labels[r, at + len(inp):at + length] = tgt
                seg[r, at:at + length] = s
                pos[r, at:at + length] = np.arange(length)
                at += length
        return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels),
                "segment_ids": torch.from_numpy(seg), "position_ids": torch.from_numpy(pos)}
    b_len = rows[0].target_len or 0
    if trim:
        b_len = max(1, max(r.used_target for r in rows))
    dec_in = np.full((n, b_len), pad_token_id, dtype=np.int64)
    labels = np.full((n, b_len), IGNORE_INDEX, dtype=np.int64)
    dseg = np.zeros((n, b_len), dtype=np.int64)
    dpos = np.zeros((n, b_len), dtype=np.int64)
    for r, row in enumerate(rows):
        at_a = at_b = 0
        for s, (inp, tgt) in enumerate(row.segments, start=1):
            ids[r, at_a:at_a + len(inp)] = inp
            seg[r, at_a:at_a + len(inp)] = s
            pos[r, at_a:at_a + len(inp)] = np.arange(len(inp))
            at_a += len(inp)
            end = at_b + len(tgt)
            labels[r, at_b:end] = tgt
            dec_in[r, at_b] = decoder_start_token_id
            dec_in[r, at_b + 1:end] = tgt[:-1]
            dseg[r, at_b:end] = s
            dpos[r, at_b:end] = np.arange(len(tgt))
            at_b = end
    return {"input_ids": torch.from_numpy(ids), "encoder_segment_ids": torch.from_numpy(seg),
            "encoder_positions": torch.from_numpy(pos),
            "decoder_input_ids": torch.from_numpy(dec_in), "labels": torch.from_numpy(labels),
            "decoder_segment_ids": torch.from_numpy(dseg),
            "decoder_positions": torch.from_numpy(dpos)}


def collate_unpacked(examples: Sequence[tuple[Sequence[int], Sequence[int]]], kind: str, *,
                     input_len: int | None = None, target_len: int | None = None,
                     truncation: str = "error", pad_token_id: int = 0,
                     decoder_start_token_id: int = 0) -> dict[str, Any]:
    """One example per row, padded to the longest in the batch (or to the given lengths).

    Same keys as ``collate`` (segment ids are 1 / 0), plus 2D ``attention_mask`` (and
    ``decoder_attention_mask`` for seq2seq) so the batch also works with a plain HF forward.
    """
    if not examples:
        raise PackingError("collate_unpacked needs at least one example")
    if kind == "causal":
        longest = max(len(i) + len(t) for i, t in examples)
        rows = pack(examples, kind=kind, input_len=input_len or longest, method="none",
                    truncation=truncation)
    else:
        rows = pack(examples, kind=kind, input_len=input_len or max(len(i) for i, _ in examples),
                    target_len=target_len or max(len(t) for _, t in examples), method="none",
                    truncation=truncation)
    batch = collate(rows, kind, pad_token_id=pad_token_id,
                    decoder_start_token_id=decoder_start_token_id)
    if kind == "causal":
        batch["attention_mask"] = (batch["segment_ids"] > 0).long()
    else:
        batch["attention_mask"] = (batch["encoder_segment_ids"] > 0).long()
        batch["decoder_attention_mask"] = (batch["decoder_segment_ids"] > 0).long()
    return batch
