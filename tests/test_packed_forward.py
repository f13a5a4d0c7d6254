"""Packed forward passes equal unpacked ones: masks, loss sums, gradients, per-segment losses.

Exactness is checked in float64 (elementwise tolerance 1e-9), where the only difference between a
packed and an unpacked run is summation order. In float32 (the builtin model sizes) the loss
sums agree to 1e-5 relative, but single gradient elements differ by up to ~2e-5 absolute
(float32 rounding of sums over differently shaped matmuls), so float32 gradients are compared
per tensor as ||g_packed - g_ref|| / ||g_ref|| <= 1e-5.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from flan_nb import models
from flan_nb.train import packed_forward, packing

T5_SMALL = dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4)
LLAMA_SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2)


def random_examples(n: int, *, max_in: int, max_tgt: int, seed: int):
    rng = random.Random(seed)
    return [([rng.randrange(3, 250) for _ in range(rng.randint(1, max_in))],
             [rng.randrange(3, 250) for _ in range(rng.randint(1, max_tgt))]) for _ in range(n)]


def t5(dtype=torch.float64, attn="sdpa", **overrides):
    model, _ = models.build_tiny_t5(**{**T5_SMALL, **overrides})
    model.set_attn_implementation(attn)
    return model.to(dtype).eval()


def llama(dtype=torch.float64, attn="sdpa", **overrides):
    model, _ = models.build_tiny_llama(**{**LLAMA_SMALL, **overrides})
    model.set_attn_implementation(attn)
    return model.to(dtype).eval()


def unpacked_t5_loss(model, inp, tgt):
    """HF's own forward on one unpadded example: the reference implementation."""
    out = model(input_ids=torch.tensor([inp]), labels=torch.tensor([tgt]))
    return out.loss * len(tgt)


def unpacked_causal_loss(model, inp, tgt):
    logits = model(input_ids=torch.tensor([inp + tgt])).logits[0]
    return F.cross_entropy(logits[len(inp) - 1:-1], torch.tensor(tgt), reduction="sum")


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def compare(model, examples, batch, reference, *, rtol, atol, grad_norm_rtol=None):
    """Packed vs reference: loss sum (rtol/atol), then every parameter's gradient —
    elementwise (rtol/atol), or as ||g_packed - g_ref|| / ||g_ref|| <= grad_norm_rtol."""
    model.zero_grad(set_to_none=True)
    loss_sum, n_tokens = packed_forward.packed_loss(model, batch)
    loss_sum.backward()
    packed_grads = grads(model)
    model.zero_grad(set_to_none=True)
    ref_total = 0.0
    for inp, tgt in examples:
        ref = reference(model, inp, tgt)
        ref.backward()
        ref_total += ref.detach()
    ref_grads = grads(model)
    assert int(n_tokens) == sum(len(t) for _, t in examples)
    torch.testing.assert_close(loss_sum.detach(), torch.as_tensor(ref_total), rtol=rtol, atol=atol)
    assert packed_grads.keys() == ref_grads.keys()
    assert len(packed_grads) == len(list(model.parameters()))  # every parameter got a gradient
    for name in ref_grads:
        if grad_norm_rtol is None:
            torch.testing.assert_close(packed_grads[name], ref_grads[name], rtol=rtol, atol=atol,
                                       msg=lambda m, name=name: f"{name}: {m}")
        else:
            diff = float((packed_grads[name] - ref_grads[name]).norm())
            assert diff <= grad_norm_rtol * float(ref_grads[name].norm()) + 1e-12, name
    return loss_sum


# ---------------------------------------------------------------------------------------------
# Masks


def brute_force_allowed(q_seg, k_seg, causal):
    """Real queries: same segment (and not in the future); padding queries: anything."""
    out = torch.zeros(q_seg.shape[0], q_seg.shape[1], k_seg.shape[1], dtype=torch.bool)
    for b in range(q_seg.shape[0]):
        for i in range(q_seg.shape[1]):
            for j in range(k_seg.shape[1]):
                if q_seg[b, i] == 0:
                    out[b, i, j] = True
                else:
                    out[b, i, j] = q_seg[b, i] == k_seg[b, j] and (not causal or j <= i)
    return out


def test_masks_are_exactly_block_diagonal():
    examples = random_examples(10, max_in=9, max_tgt=6, seed=0)
    rows = packing.pack(examples, kind="seq2seq", input_len=20, target_len=12)
    batch = packing.collate(rows, "seq2seq")
    enc, dec = batch["encoder_segment_ids"], batch["decoder_segment_ids"]
    minimum = torch.finfo(torch.float32).min
    cases = [
        (packed_forward.encoder_mask(batch, torch.float32), enc, enc, False),
        (packed_forward.decoder_self_mask(batch, torch.float32), dec, dec, True),
        (packed_forward.cross_mask(batch, torch.float32), dec, enc, False),
    ]
    for mask, q, k, causal in cases:
        assert mask.shape == (len(rows), 1, q.shape[1], k.shape[1])
        allowed = brute_force_allowed(q, k, causal)
        assert torch.equal(mask[:, 0] == 0, allowed)
        assert torch.all(mask[:, 0][~allowed] == minimum)
        # no real query sees a padding key or another segment's key
        real_q = (q > 0)[:, :, None]
        assert not torch.any((mask[:, 0] == 0) & real_q & (q[:, :, None] != k[:, None, :]))
    # several segments really were packed, so the test is not vacuous
    assert int(enc.max()) >= 3


def test_causal_mask_is_causal_and_block_diagonal():
    examples = random_examples(8, max_in=6, max_tgt=4, seed=1)
    batch = packing.collate(packing.pack(examples, kind="causal", input_len=24), "causal")
    mask = packed_forward.causal_lm_mask(batch, torch.float64)
    seg = batch["segment_ids"]
    assert torch.equal(mask[:, 0] == 0, brute_force_allowed(seg, seg, True))
    assert int(seg.max()) >= 2


# ---------------------------------------------------------------------------------------------
# Loss and gradient equality


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_t5_packed_loss_and_grads_equal_unpacked_float64(attn):
    torch.manual_seed(0)
    model = t5(attn=attn)
    examples = random_examples(10, max_in=14, max_tgt=8, seed=2)
    rows = packing.pack(examples, kind="seq2seq", input_len=40, target_len=20)
    assert len(rows) < len(examples)  # really packed
    batch = packing.collate(rows, "seq2seq")
    compare(model, examples, batch, unpacked_t5_loss, rtol=1e-9, atol=1e-9)


def test_t5_builtin_size_float32_within_1e_5():
    torch.manual_seed(0)
    model, _ = models.build_tiny_t5()  # the real builtin:tiny-t5 shape, float32
    examples = random_examples(6, max_in=20, max_tgt=8, seed=3)
    rows = packing.pack(examples, kind="seq2seq", input_len=48, target_len=24)
    assert len(rows) < len(examples)
    compare(model, examples, packing.collate(rows, "seq2seq"), unpacked_t5_loss,
            rtol=1e-5, atol=1e-5, grad_norm_rtol=1e-5)


def test_t5_relative_bias_crosses_buckets_within_segments():
    # segments longer than the exact-bucket range (16 bidirectional) exercise the log buckets;
    # a packed segment starting at row offset > 0 must still get offset-free biases
    torch.manual_seed(0)
    model = t5(relative_attention_max_distance=32)
    examples = random_examples(4, max_in=40, max_tgt=20, seed=4)
    rows = packing.pack(examples, kind="seq2seq", input_len=120, target_len=60)
    assert len(rows) == 1
    compare(model, examples, packing.collate(rows, "seq2seq"), unpacked_t5_loss,
            rtol=1e-9, atol=1e-9)


# Llama's eager kernel computes the softmax in float32 even for a float64 model, so its
# float64 run is only float32-exact there
@pytest.mark.parametrize(("attn", "tol"), [("sdpa", 1e-9), ("eager", 1e-5)])
def test_llama_packed_loss_and_grads_equal_unpacked_float64(attn, tol):
    torch.manual_seed(0)
    model = llama(attn=attn)
    examples = random_examples(10, max_in=14, max_tgt=8, seed=5)
    rows = packing.pack(examples, kind="causal", input_len=48)
    assert len(rows) < len(examples)
    compare(model, examples, packing.collate(rows, "causal"), unpacked_causal_loss,
            rtol=tol, atol=tol)


def test_llama_builtin_size_float32_within_1e_5():
    model, _ = models.build_tiny_llama()
    examples = random_examples(6, max_in=20, max_tgt=8, seed=6)
    rows = packing.pack(examples, kind="causal", input_len=64)
    compare(model, examples, packing.collate(rows, "causal"), unpacked_causal_loss,
            rtol=1e-5, atol=1e-5, grad_norm_rtol=1e-5)


def test_packing_matters_without_masks():
    """Sanity: the equality above is not trivially true — dropping the segment structure
    (one segment per row) changes the loss."""
    model = t5()
    examples = random_examples(6, max_in=10, max_tgt=6, seed=7)
    batch = packing.collate(packing.pack(examples, kind="seq2seq", input_len=60,
                                         target_len=40), "seq2seq")
    packed, _ = packed_forward.packed_loss(model, batch)
    merged = dict(batch)
    merged["encoder_segment_ids"] = (batch["encoder_segment_ids"] > 0).long()
    merged["decoder_segment_ids"] = (batch["decoder_segment_ids"] > 0).long()
    leaky, _ = packed_forward.packed_loss(model, merged)
    assert abs(float(packed.detach()) - float(leaky.detach())) > 1e-3


# ---------------------------------------------------------------------------------------------
# Per-segment losses, unpacked batches, errors


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_per_segment_losses_match_each_example(kind):
    model = t5() if kind == "seq2seq" else llama()
    reference = unpacked_t5_loss if kind == "seq2seq" else unpacked_causal_loss
    examples = random_examples(9, max_in=10, max_tgt=6, seed=8)
    rows = packing.pack(examples, kind=kind, input_len=36, target_len=18)
    batch = packing.collate(rows, kind)
    with torch.no_grad():
        total, sums, counts = packed_forward.packed_segment_losses(model, batch)
        sums2, counts2 = packed_forward.per_segment_losses(model, batch)
        for r, row in enumerate(rows):
            for j, idx in enumerate(row.example_indices):
                inp, tgt = examples[idx]
                assert int(counts[r, j]) == len(tgt)
                torch.testing.assert_close(sums[r, j], reference(model, inp, tgt))
            assert int(counts[r, len(row.example_indices):].sum()) == 0
    torch.testing.assert_close(total, sums.sum())
    assert torch.equal(sums, sums2) and torch.equal(counts, counts2)


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_unpacked_collate_gives_the_same_loss_as_packed(kind):
    model = t5() if kind == "seq2seq" else llama()
    examples = random_examples(7, max_in=12, max_tgt=7, seed=9)
    packed = packing.collate(packing.pack(examples, kind=kind, input_len=40, target_len=20),
                             kind)
    unpacked = packing.collate_unpacked(examples, kind)
    with torch.no_grad():
        a, na = packed_forward.packed_loss(model, packed)
        b, nb = packed_forward.packed_loss(model, unpacked)
    assert int(na) == int(nb)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_z_loss_adds_a_positive_term():
    model = t5()
    batch = packing.collate_unpacked(random_examples(3, max_in=5, max_tgt=4, seed=10), "seq2seq")
    with torch.no_grad():
        plain, _ = packed_forward.packed_loss(model, batch)
        with_z, _ = packed_forward.packed_loss(model, batch, z_loss=1e-4)
    assert float(with_z) > float(plain)


def test_kind_mismatch_is_an_error():
    causal_batch = packing.collate_unpacked([([1, 2], [3])], "causal")
    seq_batch = packing.collate_unpacked([([1, 2], [3])], "seq2seq")
    with pytest.raises(ValueError, match="encoder-decoder"):
        packed_forward.packed_loss(t5(), causal_batch)
    with pytest.raises(ValueError, match="decoder-only"):
        packed_forward.packed_loss(llama(), seq_batch)


def test_bfloat16_model_gives_a_finite_float32_loss():
    model = t5(dtype=torch.bfloat16)
    batch = packing.collate(packing.pack(random_examples(5, max_in=8, max_tgt=5, seed=11),
                                         kind="seq2seq", input_len=30, target_len=16), "seq2seq")
    loss, n = packed_forward.packed_loss(model, batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and int(n) > 0


def test_packed_lm_module_and_wrappers_give_the_same_losses():
    model = t5()
    batch = packing.collate(packing.pack(random_examples(6, max_in=8, max_tgt=5, seed=12),
                                         kind="seq2seq", input_len=30, target_len=16), "seq2seq")

    class Wrapper(torch.nn.Module):  # stands in for DDP: forwards to .module
        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, **kw):
            return self.module(**kw)

    with torch.no_grad():
        direct = packed_forward.packed_segment_losses(model, batch)
        via_module = packed_forward.packed_segment_losses(packed_forward.PackedLM(model), batch)
        via_wrapper = packed_forward.packed_segment_losses(
            Wrapper(packed_forward.PackedLM(model)), batch)
        via_wrapped_hf = packed_forward.packed_segment_losses(Wrapper(model), batch)
    for other in (via_module, via_wrapper, via_wrapped_hf):
        for a, b in zip(direct, other):
            assert torch.equal(a, b)
