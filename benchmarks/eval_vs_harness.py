"""Evaluation speed against the standard harness, against the FLOP bound, and on a shared machine.

One run prints three figures per benchmark (issue 14):

1. flan_nb vs lm-evaluation-harness: the same few-shot direct prompts (BBH 3-shot: the first
   `--bbh-items` items of each of the 27 subtasks; MMLU 5-shot: the first `--mmlu-items` test
   items of each of the 57 subjects), the same saved model, the same greedy settings, stop
   strings and new-token cap, batch `--batch-size` on both sides. flan_nb runs in this process;
   the harness runs `HFLM.generate_until` in its own venv (benchmarks/harness_generate.py).
   Printed: wall time of each (generation only; model loading is printed apart), the ratio, and
   the share of identical stripped generations. Targets: ratio <= 0.25, identical >= 99%.
2. The physical limit: the FLOPs that must be computed -- each subtask's shared few-shot prefix
   once, each prompt's remaining tokens, each generated token (linear layers 2 x weights per
   token, attention 4 x layers x heads x head_dim x context per token, the LM head only where a
   next token is read) -- divided by this machine's matmul rate measured in the same run (the
   best of the model's own layer shapes at 1,024 rows). flan_nb's time as a multiple of that
   bound; target <= 2x. Decoding is bound by memory bandwidth rather than FLOPs; the bound
   ignores that and so is optimistic.
3. A shared machine: flan_nb on `--contention-items` items per BBH subtask, quiet and then with
   one CPU-bound competitor (a torch matmul loop with torch's default threads, started and
   stopped here), and a short flan_nb training run (benchmarks/train_throughput.py, packed,
   builtin:tiny-t5) the same way. Printed: each slowdown; target <= 2.5x.
4. T5 on its own line: an encoder-decoder model with Flan-T5-small's shape (d_model 512, d_ff
   1,024, 8+8 layers, 6 heads; random weights from a fixed seed and the byte vocabulary, since
   no T5 checkpoint is on this machine: pass `--t5-model` a saved T5 directory or hub id to use
   a real one) on the first `--t5-items` BBH items per subtask, flan_nb vs the harness's seq2seq
   backend, with its own FLOP bound (encoder over each prompt, cross-attention keys/values
   once per row, decoder per generated token). No prefix trick applies (the encoder is
   bidirectional): both sides run one encoder pass per length-sorted batch and the decoder with
   its cache, so the ratio is expected near 1x.

Setup (once; lm-eval only lives in its own venv):

    python3.11 -m venv artifacts/venv-harness
    artifacts/venv-harness/bin/pip install torch==2.13.0 transformers==5.24.0 \\
        accelerate==1.15.0 datasets==5.2.0 lm-eval==0.4.13

    FLAN_NB_DATA=../shared/data .venv/bin/python benchmarks/eval_vs_harness.py
    .venv/bin/python benchmarks/eval_vs_harness.py --bbh-items 2 --mmlu-items 1 --no-contention
    .venv/bin/python benchmarks/eval_vs_harness.py --benchmarks "" --no-contention  # T5 line only

Never run it next to another heavy job: the point of part 3 is that the benchmark controls the
competition itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from flan_nb import config, models
from flan_nb.eval import answers, generation
from flan_nb.eval import benchmarks as bd
from flan_nb.eval import driver as evaluation
from flan_nb.eval import prompts as pr

ROOT = Path(__file__).resolve().parents[1]
COMPETITOR = "import torch\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n"


def prompts_for(benchmark: str, loaded: Any, root: Path, first: int,
                subtasks: list[str] | None = None) -> dict[str, Any]:
    """The first `first` items of every subtask (file order), direct few-shot, fitted to the
    model's context exactly as the evaluation notebooks fit them."""
    data = bd.load(benchmark, source="offline", data_root=str(root), subtasks=subtasks)
    for name in data.items:
        data.items[name] = data.items[name][:first]
    items = pr.build_items(benchmark, "direct", data)
    new_tokens = pr.max_new_tokens(benchmark, "direct")
    count = generation.count_tokens(loaded)
    # the notebooks' own fitting: exemplars dropped first, then a too-long query cut from the
    # left; an encoder-decoder model's encoder holds the prompt alone
    budget = loaded.max_context - (new_tokens if loaded.kind == "causal" else 0)
    texts = [evaluation._fit(it, budget, loaded, count)[0] for it in items]
    return {"benchmark": benchmark, "items": items, "texts": texts,
            "prefixes": evaluation.shared_prefixes(texts, items),
            "stop": list(evaluation.stop_strings("direct")), "new_tokens": new_tokens,
            "subtasks": len(data.items)}


def run_flan_nb(loaded: Any, p: dict[str, Any], batch_size: int) -> tuple[list[str], float, dict]:
    stats: dict[str, Any] = {}
    t0 = time.perf_counter()
    out = generation.generate(loaded, p["texts"], max_new_tokens=p["new_tokens"], stop=p["stop"],
                              batch_size=batch_size, prefixes=p["prefixes"], stats=stats,
                              desc=f"flan_nb {p['benchmark']}")
    return [o[0] for o in out], time.perf_counter() - t0, stats


def run_harness(python: str, model_dir: Path, p: dict[str, Any], batch_size: int,
                threads: int, backend: str = "causal", max_length: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        req, out = Path(tmp) / "requests.json", Path(tmp) / "out.json"
        req.write_text(json.dumps({"model": str(model_dir), "texts": p["texts"],
                                   "until": p["stop"], "max_gen_toks": p["new_tokens"],
                                   "batch_size": batch_size, "threads": threads,
                                   "backend": backend, "max_length": max_length}))
        subprocess.run([python, str(ROOT / "benchmarks" / "harness_generate.py"), str(req),
                        str(out)], check=True)
        return json.loads(out.read_text())


def matmul_rate(model: Any, seconds: float = 2.0) -> float:
    """Best measured FLOP/s of this machine over the model's distinct linear-layer shapes,
    1,024 rows each (float32, torch's thread count)."""
    shapes = sorted({tuple(m.weight.shape) for m in model.modules()
                     if isinstance(m, torch.nn.Linear) and m.weight.shape[0] < 16384})
    best = 0.0
    for out_f, in_f in shapes:
        a, w = torch.randn(1024, in_f), torch.randn(out_f, in_f)
        for _ in range(3):
            torch.nn.functional.linear(a, w)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / len(shapes):
            torch.nn.functional.linear(a, w)
            n += 1
        best = max(best, 2 * 1024 * in_f * out_f * n / (time.perf_counter() - t0))
    return best


def flop_bound(loaded: Any, p: dict[str, Any], stats: dict[str, Any]) -> dict[str, float]:
    """FLOPs that any exact evaluation of these prompts must compute (see the module doc)."""
    model, cfg = loaded.model, loaded.model.config
    head = model.get_output_embeddings()
    linear = sum(m.weight.numel() for m in model.modules()
                 if isinstance(m, torch.nn.Linear) and m is not head)
    head_flops = 2 * head.weight.numel()
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    attn = 4 * cfg.num_hidden_layers * heads * head_dim  # per token, per key attended

    def attention(start: int, stop: int) -> float:  # positions start..stop-1 attend to pos+1 keys
        return attn * (stop * (stop + 1) - start * (start + 1)) / 2

    count = generation.count_tokens(loaded)
    groups: dict[str, list[str]] = {}
    for text, prefix in zip(p["texts"], p["prefixes"], strict=True):
        groups.setdefault(prefix, []).append(text)
    tokens = flops = 0.0
    for prefix, texts in groups.items():
        shared = generation.shared_prefix_len(loaded, texts, prefix) if len(texts) > 1 else 0
        tokens += shared
        flops += 2 * linear * shared + attention(0, shared)
        for text in texts:
            n = count(text)
            tokens += n - shared
            flops += 2 * linear * (n - shared) + attention(shared, n) + head_flops
    for n_prompt, n_new in stats["rows"]:
        # a token is generated from the position before it: the first from the prompt's last
        # position (counted above), each further one from the previous generated token
        fed = n_new - 1
        tokens += fed
        flops += (2 * linear + head_flops) * fed + attention(n_prompt, n_prompt + fed)
    return {"tokens": tokens, "flops": flops}


def flop_bound_seq2seq(loaded: Any, stats: dict[str, Any]) -> dict[str, float]:
    """FLOPs an exact encoder-decoder evaluation must compute: per row, the encoder over its
    prompt (bidirectional attention), the cross-attention keys and values over the encoder
    output once, and the decoder per generated token (self-attention to the tokens so far,
    cross-attention to the prompt, the LM head)."""
    model, cfg = loaded.model, loaded.model.config
    head = model.get_output_embeddings()

    def linear_params(module: Any, keep: Any = lambda name: True) -> int:
        return sum(m.weight.numel() for name, m in module.named_modules()
                   if isinstance(m, torch.nn.Linear) and m is not head and keep(name))

    def cross_kv(name: str) -> bool:
        return name.endswith(("EncDecAttention.k", "EncDecAttention.v"))

    enc = linear_params(model.encoder)
    kv = linear_params(model.decoder, cross_kv)
    dec = linear_params(model.decoder, lambda name: not cross_kv(name))
    per_key_enc = 4 * cfg.num_layers * cfg.num_heads * cfg.d_kv
    per_key_dec = 4 * cfg.num_decoder_layers * cfg.num_heads * cfg.d_kv
    head_flops = 2 * head.weight.numel()
    tokens = flops = 0.0
    for n_enc, n_new in stats["rows"]:
        # the decoder is fed its start token and every generated token but the last
        tokens += n_enc + n_new
        flops += 2 * enc * n_enc + per_key_enc * n_enc * n_enc + 2 * kv * n_enc
        flops += n_new * (2 * dec + head_flops + per_key_dec * n_enc)
        flops += per_key_dec * n_new * (n_new + 1) / 2
    return {"tokens": tokens, "flops": flops}


def data_root(arg: str) -> Path:
    """The offline mirror for a benchmark: --data-root, else $FLAN_NB_DATA, else ../shared/data."""
    fallback = config.data_root() or ROOT.parent / "shared" / "data"
    return config.require_data_root(arg or str(fallback), what="benchmarks")


def t5_model_dir(spec: str) -> Path:
    """A saved T5 for both sides: `spec` loaded and saved, or (spec "") Flan-T5-small's shape
    with random weights from a fixed seed and the byte vocabulary."""
    if spec:
        loaded = models.load(spec)
        out = ROOT / "artifacts" / "cache" / "bench-models" / loaded.fingerprint[:16]
    else:
        model, tok = models.build_tiny_t5(d_model=512, d_kv=64, d_ff=1024, num_layers=8,
                                          num_decoder_layers=8, num_heads=6)
        loaded = models.LoadedModel(model, tok, "seq2seq", "", models.max_context_of(model.config),
                                    "t5-small-shape")
        out = ROOT / "artifacts" / "cache" / "bench-models" / "t5-small-shape-random"
    if not (out / "config.json").is_file():
        models.save(loaded, out)
    return out


def compare(p: dict[str, Any], ours: list[str], theirs: list[str]) -> dict[str, Any]:
    same = sum(a.strip() == b.strip() for a, b in zip(ours, theirs, strict=True))
    bench = p["benchmark"]
    correct = [sum(answers.is_correct(bench, "direct", answers.extract(bench, "direct", r, it), it)
                   for r, it in zip(outs, p["items"], strict=True)) for outs in (ours, theirs)]
    diffs = [(it.subtask, a, b) for it, a, b in zip(p["items"], ours, theirs, strict=True)
             if a.strip() != b.strip()]
    return {"identical": same, "n": len(ours), "correct_flan_nb": correct[0],
            "correct_harness": correct[1], "differences": diffs[:5]}


def with_competitor(fn: Any) -> Any:
    """Run fn() while one CPU-bound process runs (torch default threads), then stop it."""
    proc = subprocess.Popen([sys.executable, "-c", COMPETITOR])
    try:
        time.sleep(2.0)  # let it reach full speed
        return fn()
    finally:
        proc.terminate()
        proc.wait()


def train_seconds_per_step(root: Path, steps: int, threads: int) -> float:
    # `threads`, not torch's current count: this process's governor may have lowered it
    cmd = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--only", "packed",
           "--model", "builtin:tiny-t5", "--threads", str(threads),
           "--steps", str(steps), "--warmup", "1", "--batch-size", "8",
           "--data-root", str(root)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return float(json.loads(line[len("RESULT "):])["seconds_per_step"])
    raise SystemExit("train_throughput.py printed no RESULT line")


def causal_lines(args: argparse.Namespace, root: Path, report: dict[str, Any]) -> None:
    """Parts 1-3 (module doc) for the decoder-only `--model`; figures go into `report`."""
    t0 = time.perf_counter()
    loaded = models.load(args.model)
    load_s = time.perf_counter() - t0
    # both sides load the same saved weights and tokenizer
    model_dir = ROOT / "artifacts" / "cache" / "bench-models" / loaded.fingerprint[:16]
    if not (model_dir / "config.json").is_file():
        models.save(loaded, model_dir)
    del loaded
    loaded = models.load(str(model_dir))
    rate = matmul_rate(loaded.model)
    print(f"model {args.model} ({loaded.fingerprint[:12]}), load {load_s:.1f} s; torch threads "
          f"{torch.get_num_threads()}; batch {args.batch_size}; matmul rate "
          f"{rate / 1e9:.1f} GFLOP/s", flush=True)
    generation.generate(loaded, ["Q: 1+1?\nA:", "Q: 2+2?\nA:"], max_new_tokens=2,
                        batch_size=2, progress=False)  # warm-up, untimed

    report.update({"threads": torch.get_num_threads(), "matmul_flops_per_s": rate})
    first = {"bbh": args.bbh_items, "mmlu": args.mmlu_items}
    for bench in [b for b in args.benchmarks.split(",") if b]:
        p = prompts_for(bench, loaded, root, first[bench])
        ours, t_ours, stats = run_flan_nb(loaded, p, args.batch_size)
        bound = flop_bound(loaded, p, stats)
        t_bound = bound["flops"] / rate
        row: dict[str, Any] = {"n": len(p["texts"]), "flan_nb_s": t_ours,
                               "bound_s": t_bound, "bound_tokens": bound["tokens"],
                               "bound_ratio": t_ours / t_bound,
                               "prefixes_computed": stats.get("prefixes_computed")}
        print(f"\n{bench} direct: {len(p['texts'])} prompts ({p['subtasks']} subtasks x first "
              f"{first[bench]}), max_new_tokens {p['new_tokens']}", flush=True)
        print(f"  flan_nb            {t_ours:8.1f} s")
        print(f"  FLOP bound         {t_bound:8.1f} s  ({bound['tokens']:,.0f} tokens, "
              f"{bound['flops'] / 1e12:.2f} TFLOP); flan_nb / bound = {t_ours / t_bound:.2f}x "
              "(target <= 2x)", flush=True)
        if not args.no_harness:
            h = run_harness(args.harness_python, model_dir, p, args.batch_size, args.threads)
            c = compare(p, ours, h["outputs"])
            row.update({"harness_s": h["seconds"], "harness_load_s": h["load_seconds"],
                        "ratio": t_ours / h["seconds"], **c, "harness_versions": h["versions"],
                        "harness_restored": h.get("restored", [])})
            print(f"  lm-eval harness    {h['seconds']:8.1f} s  (load {h['load_seconds']:.1f} s; "
                  f"lm-eval {h['versions']['lm_eval']})")
            print(f"  ratio flan_nb / harness = {t_ours / h['seconds']:.3f}x (target <= 0.25x); "
                  f"identical stripped generations {c['identical']}/{c['n']} "
                  f"({c['identical'] / c['n']:.1%}, target >= 99%); correct {c['correct_flan_nb']}"
                  f" vs {c['correct_harness']}", flush=True)
            for sub, a, b in c["differences"]:
                print(f"    differs [{sub}]: flan_nb={a!r} harness={b!r}")
        report[bench] = row

    if not args.no_contention:
        p = prompts_for("bbh", loaded, root, args.contention_items)
        quiet = run_flan_nb(loaded, p, args.batch_size)[1]
        loaded_threads = getattr(loaded.model, "flan_nb_threads", None)
        busy = with_competitor(lambda: run_flan_nb(loaded, p, args.batch_size)[1])
        switches = loaded_threads.changes if loaded_threads is not None else 0
        print(f"\nshared machine, BBH direct {len(p['texts'])} prompts: quiet {quiet:.1f} s, with "
              f"one CPU-bound competitor {busy:.1f} s: slowdown {busy / quiet:.2f}x "
              f"(target <= 2.5x; thread switches {switches})", flush=True)
        t_quiet = train_seconds_per_step(root, args.train_steps, args.threads)
        t_busy = with_competitor(lambda: train_seconds_per_step(root, args.train_steps,
                                                                args.threads))
        print(f"shared machine, training (tiny-t5, packed, 8 rows/step): quiet {t_quiet:.3f} s/step,"
              f" with the competitor {t_busy:.3f} s/step: slowdown {t_busy / t_quiet:.2f}x "
              "(target <= 2.5x)", flush=True)
        report["contention"] = {"eval_quiet_s": quiet, "eval_busy_s": busy,
                                "eval_slowdown": busy / quiet, "train_quiet_s_per_step": t_quiet,
                                "train_busy_s_per_step": t_busy,
                                "train_slowdown": t_busy / t_quiet}


def t5_line(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    t5_dir = t5_model_dir(args.t5_model)
    t5 = models.load(str(t5_dir))
    rate = matmul_rate(t5.model)
    p = prompts_for("bbh", t5, root, args.t5_items)
    generation.generate(t5, p["texts"][:2], max_new_tokens=2, batch_size=2, progress=False)
    ours, t_ours, stats = run_flan_nb(t5, p, args.batch_size)
    bound = flop_bound_seq2seq(t5, stats)
    t_bound = bound["flops"] / rate
    n_params = sum(x.numel() for x in t5.model.parameters())
    row: dict[str, Any] = {"model": args.t5_model or "t5-small-shape-random", "n": len(ours),
                           "params": n_params, "flan_nb_s": t_ours, "bound_s": t_bound,
                           "bound_tokens": bound["tokens"], "bound_ratio": t_ours / t_bound,
                           "matmul_flops_per_s": rate,
                           "generated_tokens": sum(n for _, n in stats["rows"])}
    print(f"\nT5 ({row['model']}, {n_params / 1e6:.0f}M parameters; matmul rate "
          f"{rate / 1e9:.1f} GFLOP/s), BBH direct {len(ours)} prompts (first {args.t5_items} "
          f"per subtask), {row['generated_tokens']:,} tokens generated", flush=True)
    print(f"  flan_nb            {t_ours:8.1f} s")
    print(f"  FLOP bound         {t_bound:8.1f} s  ({bound['tokens']:,.0f} tokens, "
          f"{bound['flops'] / 1e12:.2f} TFLOP); flan_nb / bound = {t_ours / t_bound:.2f}x",
          flush=True)
    if not args.no_harness:
        h = run_harness(args.harness_python, t5_dir, p, args.batch_size, args.threads,
                        backend="seq2seq", max_length=t5.max_context)
        c = compare(p, ours, h["outputs"])
        row.update({"harness_s": h["seconds"], "ratio": t_ours / h["seconds"], **c,
                    "harness_restored": h.get("restored", [])})
        print(f"  lm-eval harness    {h['seconds']:8.1f} s  (seq2seq backend)")
        if h.get("restored"):
            print(f"  (harness: {', '.join(h['restored'])} put back after HFLM's tie_weights() "
                  "replaced it with the input embedding; see harness_generate.py)")
        print(f"  ratio flan_nb / harness = {t_ours / h['seconds']:.3f}x; identical stripped "
              f"generations {c['identical']}/{c['n']} ({c['identical'] / c['n']:.1%})",
              flush=True)
        for sub, a, b in c["differences"]:
            print(f"    differs [{sub}]: flan_nb={a!r} harness={b!r}")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--benchmarks", default="bbh,mmlu")
    ap.add_argument("--bbh-items", type=int, default=20, help="first items per BBH subtask")
    ap.add_argument("--mmlu-items", type=int, default=5, help="first test items per subject")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--harness-python", default=str(ROOT / "artifacts" / "venv-harness" / "bin"
                                                    / "python"))
    ap.add_argument("--no-harness", action="store_true")
    ap.add_argument("--no-contention", action="store_true")
    ap.add_argument("--contention-items", type=int, default=5)
    ap.add_argument("--train-steps", type=int, default=6)
    ap.add_argument("--t5-items", type=int, default=5,
                    help="first items per BBH subtask for the T5 line (0: no T5 line)")
    ap.add_argument("--t5-model", default="",
                    help="a T5 checkpoint (dir or hub id); default Flan-T5-small's shape, random")
    ap.add_argument("--data-root", default="")
    ap.add_argument("--json", default="", help="also write the figures to this file")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    root = data_root(args.data_root)
    if not args.no_harness and not Path(args.harness_python).exists():
        raise SystemExit(f"no harness venv at {args.harness_python}: create it as the module "
                         "doc says, or pass --no-harness")
    report: dict[str, Any] = {"model": args.model, "threads": args.threads,
                              "batch_size": args.batch_size}
    if [b for b in args.benchmarks.split(",") if b] or not args.no_contention:
        causal_lines(args, root, report)
    if args.t5_items:
        report["t5"] = t5_line(args, root)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
