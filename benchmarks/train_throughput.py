"""Training throughput: the HF Trainer + dynamic padding vs flan_nb packing.

Two models: `--model builtin:tiny-t5` (encoder-decoder, byte tokenizer; HF Seq2SeqTrainer) and
`--model smollm2` (SmolLM2-135M-Instruct, decoder-only; HF Trainer on input+target sequences with
the loss on target tokens only). Same 2,000 real examples from the offline mirror
(1,000 Flan CoT rows over the 7 CoT TSVs + 1,000 instances of the 4 NIv2 task files), same
Adafactor (constant LR, no parameter scaling), same truncation, and the same token budget per
step: both take `--batch-size` sequences of at most input_len + target_len token slots per step
(HF: examples padded to the longest in the batch; flan_nb: packed rows of exactly that size).

Reported: non-pad tokens/s (input + target tokens that are not padding), their ratio, and the
padding fraction of the token slots each method actually computed on. The first `--warmup` steps
are not timed. Wall-clock and per-CPU-second rates are both reported: on a shared machine other
processes distort wall time, while CPU seconds of the training process do not. Each method runs in
a process of its own so that its peak resident memory (ru_maxrss, model load included) is its own.

Decoder-only (`--model smollm2`): an example is one sequence, input then target+EOS, at most
input_len tokens (target_len unused); HF pads each batch of `--batch-size` examples to its longest
and masks prompt and pad labels with -100; flan_nb packs `--batch-size` rows of input_len tokens
with per-example attention masks and positions.

    .venv/bin/python benchmarks/train_throughput.py --data-root ../shared/data --steps 12
    .venv/bin/python benchmarks/train_throughput.py --model smollm2 --threads 2 --steps 6 \
        --batch-size 4 --input-len 512 --lr 1e-4
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flan_nb.train import launcher
from flan_nb.train import params as train_params

N_COT = 1000
N_NIV2 = 1000


def load_examples(root: Path, n_cot: int, n_niv2: int, seed: int) -> list[dict[str, str]]:
    """Real examples as (inputs, targets); CoT targets carry the rationale, NIv2 inputs the task
    definition (the zero-shot Flan formats, in our own wording)."""
    from flan_nb.data import loaders as data

    rng = random.Random(seed)
    cot_rows: list[dict[str, str]] = []
    for tsv in sorted((root / "flan_cot").glob("*_train.tsv")):
        for r in data.load_cot_tsv(tsv):
            cot_rows.append({
                "inputs": f"{r['inputs']}\nLet's think step by step.",
                "targets": f"{r['rationale']} So the answer is {r['targets']}.",
                "collection": "cot"})
    niv2_rows: list[dict[str, str]] = []
    for task in sorted((root / "niv2" / "tasks").glob("*.json")):
        for r in data.load_niv2(task, split="all"):
            niv2_rows.append({"inputs": f"{r['definition']}\n\nInput: {r['inputs']}\nOutput:",
                              "targets": r["targets"], "collection": "niv2"})
    if len(cot_rows) < n_cot or len(niv2_rows) < n_niv2:
        raise SystemExit(f"need {n_cot} CoT and {n_niv2} NIv2 examples, found {len(cot_rows)} "
                         f"and {len(niv2_rows)} under {root}")
    rows = rng.sample(cot_rows, n_cot) + rng.sample(niv2_rows, n_niv2)
    rng.shuffle(rows)
    return rows


def tokenize(rows: list[dict[str, str]], tokenizer: Any, input_len: int, target_len: int,
             kind: str = "seq2seq") -> list[tuple[list[int], list[int]]]:
    """(input ids, target ids) as the training loop's own tokenize_mixture makes them, so both
    methods see identical token ids (seq2seq: inputs+EOS / targets+EOS; causal: BOS+inputs /
    targets+EOS, together at most input_len)."""
    import datasets

    from flan_nb.train import loop as train

    data = train.tokenize_mixture(datasets.Dataset.from_list(rows), tokenizer, kind=kind,
                                  input_len=input_len, target_len=target_len,
                                  truncation="truncate", progress=False)
    return list(zip(data.inputs, data.targets))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def run_hf(pairs, args, loaded: Any) -> dict[str, Any]:
    """Seq2SeqTrainer with DataCollatorForSeq2Seq (dynamic padding to the batch's longest)."""
    import datasets
    import torch
    from transformers import (
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        Trainer,
        TrainerCallback,
    )
    from transformers.optimization import Adafactor

    model = loaded.model
    model.train()
    causal = loaded.kind == "causal"
    if causal:  # one sequence per example; loss on the target tokens only
        ds = datasets.Dataset.from_dict({"input_ids": [p[0] + p[1] for p in pairs],
                                         "labels": [[-100] * len(p[0]) + p[1] for p in pairs]})
    else:
        ds = datasets.Dataset.from_dict({"input_ids": [p[0] for p in pairs],
                                         "labels": [p[1] for p in pairs]})
    if loaded.tokenizer.pad_token_id is None:
        loaded.tokenizer.pad_token = loaded.tokenizer.eos_token
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, model=None if causal else model,
                                      padding=True, label_pad_token_id=-100)
    counts: list[tuple[int, int]] = []  # (non-pad tokens, token slots) per batch

    def counting_collator(features):
        batch = collator(features)
        real = int(batch["attention_mask"].sum())
        slots = int(batch["input_ids"].numel())
        if not causal:  # the decoder side is a second sequence per example
            real += int((batch["labels"] != -100).sum())
            slots += int(batch["labels"].numel())
        counts.append((real, slots))
        return batch

    times: list[float] = []
    cpu_times: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, a, state, control, **kw):
            times.append(time.perf_counter() - self.t0)
            cpu_times.append(time.process_time() - self.c0)

    optimizer = Adafactor(model.parameters(), lr=args.lr, scale_parameter=False,
                          relative_step=False, warmup_init=False)
    with tempfile.TemporaryDirectory() as out:
        targs = Seq2SeqTrainingArguments(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
            lr_scheduler_type="constant", learning_rate=args.lr, logging_steps=10**9,
            save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
            seed=args.seed, disable_tqdm=True, remove_unused_columns=False)
        trainer_cls = Trainer if causal else Seq2SeqTrainer
        trainer = trainer_cls(model=model, args=targs, train_dataset=ds,
                                 data_collator=counting_collator, optimizers=(optimizer, None),
                                 callbacks=[Timer()])
        torch.manual_seed(args.seed)
        trainer.train()
    # the dataloader may prefetch one batch beyond the last step
    counts = counts[:len(times)]
    timed = slice(args.warmup, None)
    real = sum(c[0] for c in counts[timed])
    slots = sum(c[1] for c in counts[timed])
    seconds = sum(times[timed])
    cpu = sum(cpu_times[timed])
    name = "hf_trainer_dynamic_padding" if causal else "hf_seq2seq_trainer_dynamic_padding"
    return {"method": name, "steps": len(times), "peak_rss_mb": _peak_rss_mb(),
            "non_pad_tokens_per_s": real / seconds, "non_pad_tokens_per_cpu_s": real / cpu,
            "padding_fraction": 1 - real / slots,
            "non_pad_tokens_per_step": real / len(times[timed]),
            "slots_per_step": slots / len(times[timed]), "seconds_per_step": seconds / len(times[timed])}


def run_packed(rows, args, workdir: Path) -> dict[str, Any]:
    """flan_nb.train.loop.train() itself on the same examples (mixture written to a temp dir)."""
    import datasets

    from flan_nb import runs
    from flan_nb.train import loop as train

    mix = workdir / "mixture"
    datasets.Dataset.from_list([{**r, "task": r["collection"]} for r in rows]).save_to_disk(str(mix))
    run_dir = workdir / "run"
    run_dir.mkdir()
    # checkpoints and the final model go to the temp dir, never into the repo's artifacts/
    os.environ["FLAN_NB_ARTIFACTS"] = str(workdir / "artifacts")
    cfg = train.TrainParams(**{
        **train_params.DEFAULTS, "model": args.model, "mixture_path": str(mix),
        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "dropout": 0.0,
        "input_len": args.input_len, "target_len": args.target_len, "packing": args.packing,
        "checkpoint_every": 0, "log_every": args.steps, "seed": args.seed})
    summary = train.train(cfg, runs.open_run(str(run_dir)), progress=False)
    log = launcher.read_log(run_dir)[args.warmup:]
    real = sum(r["non_pad_tokens"] for r in log)
    slots = sum(r["token_slots"] for r in log)
    seconds = sum(r["seconds"] for r in log)
    cpu = sum(r["cpu_seconds"] for r in log)
    return {"method": f"flan_nb_packing_{args.packing}", "steps": summary["steps"],
            "peak_rss_mb": _peak_rss_mb(),
            "non_pad_tokens_per_s": real / seconds, "non_pad_tokens_per_cpu_s": real / cpu,
            "padding_fraction": 1 - real / slots,
            "non_pad_tokens_per_step": real / len(log), "slots_per_step": slots / len(log),
            "seconds_per_step": seconds / len(log),
            "examples_per_row": summary["packing_preview"][args.packing]["examples_per_row"]}


def _one_method(args: argparse.Namespace) -> dict[str, Any]:
    """Run one method in this process (the child side of `main`)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from flan_nb import config, models

    torch.set_num_threads(args.threads)
    root = config.require_data_root(args.data_root or str(config.project_root().parent / "shared" / "data"),
                                    what="the throughput benchmark")
    rows = load_examples(root, N_COT, N_NIV2, args.seed)
    if args.only == "packed":
        with tempfile.TemporaryDirectory() as tmp:
            return run_packed(rows, args, Path(tmp))
    loaded = models.load(args.model)
    kind = "causal" if loaded.kind == "causal" else "seq2seq"
    pairs = tokenize(rows, loaded.tokenizer, args.input_len, args.target_len, kind)
    lengths = [len(i) + len(t) for i, t in pairs]
    print(f"{len(pairs)} examples ({kind}); tokens/example mean "
          f"{sum(lengths) / len(lengths):.0f}, max {max(lengths)}", flush=True)
    return run_hf(pairs, args, loaded)


def _child(argv: list[str], method: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, *argv, "--only", method]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
        print(line, flush=True)
    raise SystemExit(f"{method}: the child process printed no RESULT line")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin:tiny-t5",
                        help="builtin:tiny-t5 (encoder-decoder) or smollm2 (decoder-only)")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16,
                        help="sequences per step: examples (HF) or packed rows (flan_nb)")
    parser.add_argument("--input-len", type=int, default=512)
    parser.add_argument("--target-len", type=int, default=256,
                        help="encoder-decoder only (decoder-only: 0, input_len holds both)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--packing", default="best_fit")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("hf", "packed"), default="",
                        help=argparse.SUPPRESS)  # internal: one method in this process
    parser.add_argument("--json", default="", help="also write the figures to this file")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.model != "builtin:tiny-t5":
        args.target_len = 0  # decoder-only: the row holds input and target
    if args.only:
        print("RESULT " + json.dumps(_one_method(args)), flush=True)
        return 0
    print(f"{args.model}: budget {args.batch_size} x {args.input_len}"
          f"{'+' + str(args.target_len) if args.target_len else ''} slots/step; {args.steps} "
          f"steps ({args.warmup} untimed); {args.threads} torch threads; each method in its own "
          "process", flush=True)
    hf = _child(argv, "hf")
    print(json.dumps(hf), flush=True)
    packed = _child(argv, "packed")
    print(json.dumps(packed), flush=True)
    ratio = packed["non_pad_tokens_per_s"] / hf["non_pad_tokens_per_s"]
    ratio_cpu = packed["non_pad_tokens_per_cpu_s"] / hf["non_pad_tokens_per_cpu_s"]
    print("\nmethod                              non-pad tok/s  tok/CPU-s  padding  "
          "non-pad tok/step  s/step  peak RSS MB")
    for r in (hf, packed):
        print(f"{r['method']:<35} {r['non_pad_tokens_per_s']:>13.0f}  "
              f"{r['non_pad_tokens_per_cpu_s']:>9.0f}  {r['padding_fraction']:>6.1%}  "
              f"{r['non_pad_tokens_per_step']:>16.0f}  {r['seconds_per_step']:>6.3f}  "
              f"{r['peak_rss_mb']:>11.0f}")
    print(f"\nratio packed / HF dynamic padding: {ratio:.2f}x wall-clock, {ratio_cpu:.2f}x per "
          "CPU-second (target >= 1.5x; on a shared machine the CPU-time ratio is the stable one)")
    print(f"peak memory packed / HF: {packed['peak_rss_mb'] / hf['peak_rss_mb']:.2f}x "
          "(resident set, model load included)")
    if args.json:
        Path(args.json).write_text(json.dumps({"hf": hf, "packed": packed, "ratio": ratio,
                                               "ratio_cpu_time": ratio_cpu,
                                               "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
