"""The lm-evaluation-harness side of `eval_vs_harness.py`, run in the harness's own venv.

It imports only lm-eval (never flan_nb), so it runs where lm-eval is installed:

    python3.11 -m venv artifacts/venv-harness
    artifacts/venv-harness/bin/pip install torch==2.13.0 transformers==5.24.0 \
        accelerate==1.15.0 datasets==5.2.0 lm-eval==0.4.13

    artifacts/venv-harness/bin/python benchmarks/harness_generate.py REQUESTS.json OUT.json

REQUESTS.json: {"model": saved model dir, "texts": [...], "until": [...], "max_gen_toks": int,
"batch_size": int, "threads": int, "backend": "causal" | "seq2seq" (default causal),
"max_length": the context length flan_nb fitted the prompts to (optional; lm-eval otherwise reads
it from the config, which for T5 says 512 and would left-truncate the prompts)}. The prompts go through `HFLM.generate_until` exactly as an
lm-eval task's `generate_until` requests would (the harness's batching, left padding, stop
sequences plus EOS, greedy `generate`), so the timing is the harness's own generation path
without a task's dataset loading. For a seq2seq model lm-eval 0.4.13 lets the decoder run to
`max_length` = context length + max_gen_toks (and its stop-sequence check starts only past the
context length), so the request passes `max_length` = max_gen_toks + 1 (the decoder start token
plus the cap): both sides then cap decoding at the same number of new tokens.

Untied output head (T5 1.1 / Flan-T5): `HFLM.__init__` calls `model.tie_weights()` after loading,
and transformers 5's `T5Config` always reports `tie_word_embeddings=True` (the untied head is
signalled only by both tensors being in the checkpoint, which `from_pretrained` respects). The
call then overwrites the checkpoint's `lm_head` with the input embedding, so the harness would
evaluate a different model (for a random-weight T5 it decodes nothing but pad). This script
compares the harness's parameters with a plain `from_pretrained` of the same checkpoint and puts
back any tensor the tie replaced; OUT.json says which (`restored`).

OUT.json: {"outputs": [...], "seconds": generation wall time, "load_seconds": model load time,
"restored": [parameter names put back], "versions": {...}}.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as f:
        req = json.load(f)
    import torch

    torch.set_num_threads(int(req["threads"]))
    import lm_eval
    import transformers
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    t0 = time.perf_counter()
    backend = req.get("backend", "causal")
    extra = {"max_length": int(req["max_length"])} if req.get("max_length") else {}
    lm = HFLM(pretrained=req["model"], backend=backend, device="cpu", dtype="float32",
              batch_size=int(req["batch_size"]), **extra)
    load_seconds = time.perf_counter() - t0
    restored = restore_untied(lm.model, req["model"], backend)
    gen_kwargs = {"until": list(req["until"]), "max_gen_toks": int(req["max_gen_toks"]),
                  "do_sample": False}
    if backend == "seq2seq":
        gen_kwargs["max_length"] = int(req["max_gen_toks"]) + 1
    requests = [Instance(request_type="generate_until", doc={}, arguments=(text, gen_kwargs),
                         idx=i) for i, text in enumerate(req["texts"])]
    # warm-up, untimed (allocator, kernels), as the flan_nb side gets
    lm.generate_until(requests[:1], disable_tqdm=True)
    t0 = time.perf_counter()
    outputs = lm.generate_until(requests)
    seconds = time.perf_counter() - t0
    with open(sys.argv[2], "w") as f:
        json.dump({"outputs": outputs, "seconds": seconds, "load_seconds": load_seconds,
                   "restored": restored,
                   "versions": {"lm_eval": getattr(lm_eval, "__version__", "?"),
                                "transformers": transformers.__version__,
                                "torch": torch.__version__}}, f)


def restore_untied(model: object, path: str, backend: str) -> list[str]:
    """Put back every parameter HFLM's `tie_weights()` replaced (see the module doc)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if backend == "seq2seq" else AutoModelForCausalLM
    reference = auto.from_pretrained(path, dtype=torch.float32).state_dict()
    restored = []
    with torch.no_grad():
        for name, param in list(model.named_parameters(remove_duplicate=False)):
            if name in reference and not torch.equal(param, reference[name]):
                module_name, _, attr = name.rpartition(".")
                module = model.get_submodule(module_name)
                setattr(module, attr, torch.nn.Parameter(reference[name].clone(),
                                                         requires_grad=False))
                restored.append(name)
    return restored


if __name__ == "__main__":
    main()
