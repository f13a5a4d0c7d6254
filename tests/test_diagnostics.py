from __future__ import annotations

import datasets
import torch

from flan_nb import models
from flan_nb.train import diagnostics


def _mixture(tmp_path):
    rows = {"inputs": [f"copy {w}" for w in ("alpha", "beta", "gamma", "delta")],
            "targets": ["alpha", "beta", "gamma", "delta"]}
    path = tmp_path / "mix"
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    return path


def test_untrained_model_ignores_input_and_a_copier_does_not(tmp_path):
    mix = _mixture(tmp_path)
    ckpt = tmp_path / "model"
    models.save(models.load("builtin:micro-t5"), ckpt)
    fresh = diagnostics.input_dependence(ckpt, mix, n=4)
    assert fresh["n"] == 4 and abs(fresh["gap"]) < 0.2

    # teach the same model to copy its input for a few steps: the gap must open
    loaded = models.load(str(ckpt))
    model, tok = loaded.model, loaded.tokenizer
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        for word in ("alpha", "beta", "gamma", "delta"):
            loss = model(input_ids=tok(f"copy {word}", return_tensors="pt").input_ids,
                         labels=tok(word, return_tensors="pt").input_ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    models.save(loaded, tmp_path / "copier")
    trained = diagnostics.input_dependence(tmp_path / "copier", mix, n=4)
    assert trained["gap"] > 0.5 > abs(fresh["gap"])


def test_scores_the_token_ids_training_sees(tmp_path, monkeypatch):
    """EOS on both sides for T5, and truncation that keeps EOS, exactly as train.tokenize_mixture."""
    from flan_nb.train import loop as train

    mix = _mixture(tmp_path)
    ckpt = tmp_path / "model"
    models.save(models.load("builtin:micro-t5"), ckpt)
    seen = []
    monkeypatch.setattr(diagnostics, "_example_loss",
                        lambda loaded, src, tgt: seen.append((src, tgt)) or 1.0)
    diagnostics.input_dependence(ckpt, mix, n=4, input_len=6, target_len=4)
    loaded = models.load(str(ckpt))
    ids = train.tokenize_mixture(train.load_mixture(mix), loaded.tokenizer, kind="seq2seq",
                                 input_len=6, target_len=4, truncation="truncate", progress=False)
    eos = loaded.tokenizer.eos_token_id
    assert seen[:4] == list(zip(ids.inputs, ids.targets))
    assert seen[4] == (ids.inputs[1], ids.targets[0])  # mismatched: the next example's input
    assert all(s[-1] == eos and len(s) <= 6 and t[-1] == eos and len(t) <= 4 for s, t in seen)
