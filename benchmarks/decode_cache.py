"""Long chain-of-thought decoding: key/value positions written in place vs concatenated.

The cost that kept MGSM out of the full SmolLM2 run (issue 14): 8-shot CoT prompts of thousands
of tokens and chains that run to the token cap. transformers' `DynamicLayer` concatenates each
new key/value position onto the layer's cache, so every decoding step copies the whole cache;
flan_nb's decoder (`decoding.ReservedLayer`) writes the position into a reserved buffer. One run,
the same prompts and model, greedy:

1. flan_nb (continuous batching, prefix once, in-place key/value writes);
2. the same decoder with transformers' concatenating cache (the ablation);
3. transformers' batched `generate` (engine "hf": what one writes without flan_nb; the shared
   prefix is still computed once, so only decoding differs).

Prints wall time, decoding steps, wall time per decoding step (prefill included: both flan_nb
arms prefill the same prompts the same way, so their ratio understates the decoding gain), and
identical outputs against (3).

    .venv/bin/python benchmarks/decode_cache.py                      # MGSM de, 8 items, 256 tokens
    .venv/bin/python benchmarks/decode_cache.py --language en --items 8 --max-new-tokens 512
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from eval_vs_harness import data_root

from flan_nb import models
from flan_nb.eval import benchmarks as bd
from flan_nb.eval import decoding, generation
from flan_nb.eval import driver as evaluation
from flan_nb.eval import prompts as pr


def mgsm_prompts(loaded: Any, root: Path, language: str, n: int, new_tokens: int
                 ) -> dict[str, Any]:
    """The first `n` MGSM items of `language`, 8-shot CoT, fitted as the notebooks fit them."""
    data = bd.load("mgsm", source="offline", data_root=str(root), subtasks=[language])
    data.items[language] = data.items[language][:n]
    items = pr.build_items("mgsm", "cot", data)
    count = generation.count_tokens(loaded)
    texts = [evaluation._fit(it, loaded.max_context - new_tokens, loaded, count)[0]
             for it in items]
    return {"texts": texts, "prefixes": evaluation.shared_prefixes(texts, items),
            "stop": list(evaluation.stop_strings("cot")),
            "prompt_tokens": [count(t) for t in texts]}


def timed(loaded: Any, p: dict[str, Any], args: argparse.Namespace, engine: str,
          steps: list[int]) -> tuple[list[str], float, int]:
    steps.clear()
    t0 = time.perf_counter()
    out = generation.generate(loaded, p["texts"], max_new_tokens=args.max_new_tokens,
                              stop=p["stop"], batch_size=args.batch_size, prefixes=p["prefixes"],
                              engine=engine, desc=engine)
    return [o[0] for o in out], time.perf_counter() - t0, len(steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--language", default="de")
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-root", default="")
    ap.add_argument("--json", default="", help="also write the figures to this file")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    root = data_root(args.data_root)
    loaded = models.load(args.model)
    p = mgsm_prompts(loaded, root, args.language, args.items, args.max_new_tokens)
    generation.generate(loaded, p["texts"][:1], max_new_tokens=2, progress=False)  # warm-up

    # decoding steps of our decoder (one forward of one token per running row)
    steps: list[int] = []
    real_forward = decoding.forward

    def counting(model: Any, input_ids: torch.Tensor, **kw: Any) -> Any:
        if input_ids.shape[1] == 1:
            steps.append(1)
        return real_forward(model, input_ids, **kw)

    decoding.forward = counting
    ours, t_ours, n_ours = timed(loaded, p, args, "flan_nb", steps)
    real_reserve = decoding._reserve
    decoding._reserve = lambda past, headroom: None  # transformers' concatenating layers
    cat, t_cat, n_cat = timed(loaded, p, args, "flan_nb", steps)
    decoding._reserve, decoding.forward = real_reserve, real_forward
    ref, t_hf, _ = timed(loaded, p, args, "hf", steps)

    n = len(ref)
    same = [sum(a == b for a, b in zip(o, ref, strict=True)) for o in (ours, cat)]
    prompt = p["prompt_tokens"]
    print(f"MGSM {args.language} 8-shot CoT, {n} prompts ({min(prompt):,}-{max(prompt):,} "
          f"tokens), up to {args.max_new_tokens} new tokens, batch {args.batch_size}, "
          f"{args.threads} threads, {args.model}")
    print(f"  flan_nb (in-place key/value)      {t_ours:7.1f} s  {n_ours} steps  "
          f"{t_ours / max(n_ours, 1) * 1e3:6.0f} wall ms/step  identical to generate {same[0]}/{n}")
    print(f"  flan_nb, concatenating cache      {t_cat:7.1f} s  {n_cat} steps  "
          f"{t_cat / max(n_cat, 1) * 1e3:6.0f} wall ms/step  identical to generate {same[1]}/{n}")
    print(f"  transformers generate (batched)   {t_hf:7.1f} s")
    print(f"  in-place / concatenating = {t_ours / t_cat:.2f}x; flan_nb / generate = "
          f"{t_ours / t_hf:.2f}x", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "language": args.language, "n": n, "prompt_tokens": prompt,
            "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
            "threads": args.threads, "flan_nb_s": t_ours, "flan_nb_steps": n_ours,
            "concat_s": t_cat, "concat_steps": n_cat, "generate_s": t_hf,
            "identical_flan_nb": same[0], "identical_concat": same[1]}, indent=1))


if __name__ == "__main__":
    main()
