"""The training data stream: tokenize the mixture once, shuffle per epoch, pack in windows, and serve
packed rows with a resumable position (epoch, row in epoch).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flan_nb.train.params import PACK_WINDOW, TrainError

# ---------------------------------------------------------------------------------------------
# Data: tokenize, truncate, pack, iterate


@dataclass
class TokenizedMixture:
    inputs: list[list[int]]
    targets: list[list[int]]
    collections: list[str]
    truncated_inputs: int
    truncated_targets: int

    def __len__(self) -> int:
        return len(self.inputs)


def load_mixture(path: str | os.PathLike[str], max_examples: int = 0):
    """The mixture as a datasets.Dataset, checked for the columns and rows training needs."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise TrainError(f"mixture {path} does not exist (from mixture_path / run output "
                         "`mixture_path`)")
    empty_msg = (f"mixture {path} is empty: 0 examples; check the 01_data_mixing parameters "
                 "(preset, proportions, max examples per task)")
    state = path / "state.json"
    if state.is_file() and json.loads(state.read_text(encoding="utf-8")).get("_data_files") == []:
        raise TrainError(empty_msg)  # datasets cannot even load a 0-shard dataset it saved
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - any load failure is a bad path for the user
        raise TrainError(f"mixture {path} is not a datasets directory: {exc}") from exc
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise TrainError(f"mixture {path} is a DatasetDict without a `train` split")
        ds = ds["train"]
    missing = [c for c in ("inputs", "targets") if c not in ds.column_names]
    if missing:
        raise TrainError(f"mixture {path} lacks column(s) {', '.join(missing)} "
                         f"(has {', '.join(ds.column_names)})")
    if len(ds) == 0:
        raise TrainError(empty_msg)
    if max_examples and len(ds) > max_examples:
        ds = ds.select(range(max_examples))
    return ds


def _eos_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise TrainError(f"tokenizer {type(tokenizer).__name__} has no eos_token_id; packing "
                         "needs EOS between examples")
    return int(eos)


def tokenize_mixture(ds: Any, tokenizer: Any, *, kind: str, input_len: int, target_len: int,
                     truncation: str, chunk: int = 1000, progress: bool = True
                     ) -> TokenizedMixture:
    """Token ids with EOS, truncated (and counted) or rejected per the truncation policy.

    seq2seq: inputs+EOS (<= input_len) and targets+EOS (<= target_len); truncation keeps the
    head and re-appends EOS. causal: inputs and targets+EOS must fit input_len together; the
    input loses tokens from its *front* (instructions and few-shot exemplars come first, the
    question last), then the target is cut.
    """
    from tqdm.auto import tqdm

    eos = _eos_id(tokenizer)
    # causal rows: BOS starts each packed example, so every target has a prompt to follow
    bos_id = getattr(tokenizer, "bos_token_id", None)
    bos = [int(bos_id)] if kind == "causal" and bos_id is not None else []
    cols = ds.column_names
    inputs: list[list[int]] = []
    targets: list[list[int]] = []
    collections: list[str] = []
    n_trunc_in = n_trunc_tgt = 0
    bar = tqdm(total=len(ds), desc="tokenize mixture", unit="ex", disable=not progress,
               file=sys.stderr)
    for start in range(0, len(ds), chunk):
        part = ds[start:start + chunk]
        tgt_texts = list(part["targets"])
        if kind == "causal":
            # tokenized apart, so restore the word boundary a joint tokenization would keep
            tgt_texts = [t if (i and i[-1:].isspace()) or t[:1].isspace() else " " + t
                         for i, t in zip(part["inputs"], tgt_texts)]
        enc_in = tokenizer(list(part["inputs"]), add_special_tokens=False)["input_ids"]
        enc_tgt = tokenizer(tgt_texts, add_special_tokens=False)["input_ids"]
        for j, (inp, tgt) in enumerate(zip(enc_in, enc_tgt)):
            idx = start + j
            if kind == "seq2seq":
                inp, tgt = list(inp) + [eos], list(tgt) + [eos]
                if len(inp) > input_len:
                    _too_long(truncation, "input", len(inp), input_len, ds, idx, cols)
                    inp, n_trunc_in = inp[:input_len - 1] + [eos], n_trunc_in + 1
                if len(tgt) > target_len:
                    _too_long(truncation, "target", len(tgt), target_len, ds, idx, cols)
                    tgt, n_trunc_tgt = tgt[:target_len - 1] + [eos], n_trunc_tgt + 1
            else:
                inp, tgt = bos + list(inp), list(tgt) + [eos]
                if len(tgt) > input_len - 1:
                    _too_long(truncation, "target", len(tgt), input_len - 1, ds, idx, cols)
                    tgt, n_trunc_tgt = tgt[:input_len - 2] + [eos], n_trunc_tgt + 1
                if len(inp) + len(tgt) > input_len:
                    _too_long(truncation, "input", len(inp) + len(tgt), input_len, ds, idx, cols)
                    keep = max(0, input_len - len(tgt) - len(bos))  # prompt tokens kept
                    body = inp[len(bos):]
                    inp = bos + (body[len(body) - keep:] if keep else [])
                    n_trunc_in += 1
                if not inp:  # keep one prompt token so the target is predicted from something
                    inp, tgt = [eos], tgt[:input_len - 1]
            inputs.append(inp)
            targets.append(tgt)
        coll = part["collection"] if "collection" in cols else ["all"] * len(enc_in)
        collections.extend(str(c) for c in coll)
        bar.update(len(enc_in))
    bar.close()
    return TokenizedMixture(inputs, targets, collections, n_trunc_in, n_trunc_tgt)


def _too_long(policy: str, what: str, length: int, limit: int, ds: Any, idx: int,
              cols: Sequence[str]) -> None:
    if policy == "truncate":
        return
    row = ds[idx]
    ident = ", ".join(f"{k}={row[k]!r}" for k in ("example_id", "task", "collection") if k in cols)
    key = "input_len" if what == "input" else "target_len"
    raise TrainError(
        f"mixture example #{idx} ({ident}): {what} has {length} tokens with EOS, more than "
        f"{key}={limit}; raise {key} or set truncation: truncate")


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    import numpy as np

    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


@dataclass
class Row:
    """A packed row plus which mixture examples (global indices) it holds."""

    packed: Any
    examples: list[int]


def packing_preview(data: TokenizedMixture, *, kind: str, input_len: int, target_len: int,
                    method: str, seed: int) -> dict[str, Any]:
    """pack_stats of the first packing window with `method` and with one example a row."""
    from flan_nb.train import packing

    win = epoch_order(len(data), seed, 0)[:PACK_WINDOW]
    pairs = [(data.inputs[i], data.targets[i]) for i in win]
    tlen = target_len if kind == "seq2seq" else None
    out = {}
    for name in dict.fromkeys((method, "none")):
        out[name] = packing.pack_stats(packing.pack(pairs, kind=kind, input_len=input_len,
                                                    target_len=tlen, method=name))
    return out


class RowStream:
    """Deterministic infinite stream of packed rows; position = (epoch, rows taken in epoch)."""

    def __init__(self, data: TokenizedMixture, *, kind: str, input_len: int, target_len: int,
                 method: str, seed: int, epoch: int = 0, row_in_epoch: int = 0,
                 window: int = PACK_WINDOW):
        self.data, self.kind, self.seed = data, kind, seed
        self.input_len, self.target_len, self.method, self.window = (
            input_len, target_len, method, window)
        self.epoch, self.row_in_epoch = epoch, 0
        self._it = self._epoch_rows(epoch)
        for _ in range(row_in_epoch):
            self._take_one()

    def _epoch_rows(self, epoch: int) -> Iterator[Row]:
        import numpy as np

        from flan_nb.train import packing

        order = epoch_order(len(self.data), self.seed, epoch)
        for start in range(0, len(order), self.window):
            win = order[start:start + self.window]
            pairs = [(self.data.inputs[i], self.data.targets[i]) for i in win]
            # tokenize_mixture already applied the truncation policy, so "error" here would
            # only ever fire on a bug
            rows = packing.pack(pairs, kind=self.kind, input_len=self.input_len,
                                target_len=self.target_len if self.kind == "seq2seq" else None,
                                method=self.method, truncation="error")
            # packers emit rows longest-first; shuffle so batches do not sort by length
            perm = np.random.default_rng([self.seed, epoch, start]).permutation(len(rows))
            for i in perm.tolist():
                # PackedRow.example_indices are positions in the window, not in the mixture
                yield Row(rows[i], [win[j] for j in rows[i].example_indices])

    def _take_one(self) -> Row:
        try:
            row = next(self._it)
        except StopIteration:
            if self.row_in_epoch == 0:
                raise TrainError("packing produced no rows from a non-empty mixture") from None
            self.epoch += 1
            self.row_in_epoch = 0
            if self.epoch == 1:  # the paper repeats no example; a second pass breaks that
                warnings.warn("training starts a second pass over the mixture: examples are now "
                              "repeated (use num_examples: auto in notebook 01 to size the mixture "
                              "to the training budget)", stacklevel=2)
            self._it = self._epoch_rows(self.epoch)
            row = next(self._it)
        self.row_in_epoch += 1
        return row

    def take(self, n: int) -> list[Row]:
        return [self._take_one() for _ in range(n)]

    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "row_in_epoch": self.row_in_epoch}
