"""Forward passes over packed batches with exact cross-example masking, and their token losses.

Why this module owns the plumbing: ``T5ForConditionalGeneration.forward`` passes the *encoder*
attention mask as the cross-attention mask, so a packed batch cannot get the per-segment
cross-attention pattern through it. Here the T5 encoder and decoder stacks are called directly
with three additive 4D masks (shape (batch, 1, queries, keys), 0 = attend, dtype-min = blocked;
transformers 5 passes any 4D mask through ``create_bidirectional_mask`` /
``create_causal_mask`` unchanged, and both the eager and SDPA kernels add a float mask):
- encoder self-attention: block-diagonal by segment (query and key in the same segment > 0);
- decoder self-attention: block-diagonal AND causal (key index <= query index);
- cross-attention: decoder segment s sees only encoder segment s.
Padding queries (segment 0) see every key (never blocked rows: no NaN); nothing real sees them.

Positions. T5's relative position bias is computed from index differences (key - query) over
the whole row. Inside a contiguous segment the index difference equals the difference of the
per-segment positions, so every unmasked pair gets the bias it gets unpacked; pairs across
segments are masked anyway. T5 cross-attention has no position bias. Llama-style models get
per-segment ``position_ids`` (RoPE restarts at 0 for every example) and a causal block-diagonal
4D mask. tests/test_packed_forward.py checks that packed loss and gradients equal the sum of the
unpacked per-example ones.

Multi-process training: wrap the model as ``PackedLM(model)`` before DDP / accelerate prepare,
so the forward goes through the DDP wrapper (see ``PackedLM``).

Normalization. ``packed_loss`` returns the *sum* of token cross-entropies and the number of
target tokens; the caller divides. Recommended: sum over the global batch (all micro-batches and
processes) divided by the number of target tokens in the global batch. Every target token then
has weight 1/N whichever row it sits in and however many examples share that row, so the
objective (and its gradient) is the same packed or unpacked, and gradient accumulation gives the
same update as one big batch. A per-row or per-example mean would instead up-weight tokens of
short examples and make the objective depend on how the packer happened to group examples.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from flan_nb.train.packing import IGNORE_INDEX

# not umt5: it has a relative position bias in every layer, which the packed stack does not pass
PACKABLE_T5 = ("t5", "mt5")
# causal LMs whose output is lm_head(base_model(...).last_hidden_state) with nothing in between,
# so the head can be applied to target positions only (saves a (batch, length, vocab) tensor)
_PLAIN_HEAD_CAUSAL = ("llama", "mistral", "qwen2", "qwen3", "smollm3")


# ---------------------------------------------------------------------------------------------
# Masks


def allowed_pairs(query_segments: torch.Tensor, key_segments: torch.Tensor, *,
                  causal: bool = False) -> torch.Tensor:
    """Bool (batch, queries, keys): True where a query may attend to a key.

    A query of segment s > 0 sees exactly the keys of segment s (and, if causal, only those at
    or before it). Padding queries (segment 0) see every key: their outputs never reach a real
    token or the loss, and an all-blocked row would turn into NaN wherever a kernel adds the
    mask in a narrower dtype (e.g. Llama's eager softmax runs in float32, where float64's
    minimum is -inf) — and 0 * NaN from such a row poisons the real rows in the next layer.
    """
    q = query_segments[:, :, None]
    k = key_segments[:, None, :]
    allowed = (q == k) & (q > 0)
    if causal:
        lq, lk = query_segments.shape[1], key_segments.shape[1]
        allowed = allowed & torch.ones(lq, lk, dtype=torch.bool,
                                       device=allowed.device).tril()[None]
    return allowed | (q == 0)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, q, k) bool -> (batch, 1, q, k) additive float mask (0 or the dtype's minimum)."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def encoder_mask(batch: Mapping[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    seg = batch["encoder_segment_ids"]
    return additive_mask(allowed_pairs(seg, seg), dtype)


def decoder_self_mask(batch: Mapping[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    seg = batch["decoder_segment_ids"]
    return additive_mask(allowed_pairs(seg, seg, causal=True), dtype)


def cross_mask(batch: Mapping[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    return additive_mask(allowed_pairs(batch["decoder_segment_ids"],
                                       batch["encoder_segment_ids"]), dtype)


def causal_lm_mask(batch: Mapping[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    seg = batch["segment_ids"]
    return additive_mask(allowed_pairs(seg, seg, causal=True), dtype)


# ---------------------------------------------------------------------------------------------
# Forward passes -> (hidden states or logits) at target positions


def _mask_dtype(model: Any) -> torch.dtype:
    return model.get_input_embeddings().weight.dtype


def _is_seq2seq(model: Any, batch: Mapping[str, Any]) -> bool:
    if "decoder_input_ids" in batch:
        if not getattr(model.config, "is_encoder_decoder", False):
            raise ValueError("batch is seq2seq (has decoder_input_ids) but the model is "
                             f"decoder-only ({model.config.model_type})")
        return True
    if getattr(model.config, "is_encoder_decoder", False):
        raise ValueError("batch is causal (no decoder_input_ids) but the model is "
                         f"encoder-decoder ({model.config.model_type})")
    return False


def _seq2seq_target_logits(model: Any, batch: Mapping[str, torch.Tensor],
                           select: torch.Tensor) -> torch.Tensor:
    """Logits (n_selected, vocab) at decoder positions where ``select`` is True."""
    config = model.config
    if config.model_type not in PACKABLE_T5:
        packed = max(int(batch["encoder_segment_ids"].max()),
                     int(batch["decoder_segment_ids"].max())) > 1
        if packed:
            raise NotImplementedError(
                f"packed seq2seq forward supports T5-family models {PACKABLE_T5} (shared relative "
                f"position bias); {config.model_type!r} needs unpacked batches (method='none')")
        out = model(input_ids=batch["input_ids"],
                    attention_mask=(batch["encoder_segment_ids"] > 0).long(),
                    decoder_input_ids=batch["decoder_input_ids"],
                    decoder_attention_mask=(batch["decoder_segment_ids"] > 0).long(),
                    use_cache=False)
        return out.logits[select]
    dtype = _mask_dtype(model)
    encoded = model.encoder(input_ids=batch["input_ids"], attention_mask=encoder_mask(batch, dtype))
    decoded = model.decoder(input_ids=batch["decoder_input_ids"],
                            attention_mask=decoder_self_mask(batch, dtype),
                            encoder_hidden_states=encoded.last_hidden_state,
                            encoder_attention_mask=cross_mask(batch, dtype), use_cache=False)
    hidden = decoded.last_hidden_state[select]
    # same rescaling as T5ForConditionalGeneration.forward (original T5 ties and scales; 1.1 not)
    if getattr(config, "scale_decoder_outputs", getattr(config, "tie_word_embeddings", False)):
        hidden = hidden * (config.d_model ** -0.5)
    return model.lm_head(hidden)


def _causal_target_logits(model: Any, batch: Mapping[str, torch.Tensor],
                          select: torch.Tensor) -> torch.Tensor:
    """Logits (n_selected, vocab) at positions t where ``select[t]`` (predicting token t+1)."""
    mask = causal_lm_mask(batch, _mask_dtype(model))
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=mask,
                  position_ids=batch["position_ids"], use_cache=False)
    if model.config.model_type in _PLAIN_HEAD_CAUSAL and hasattr(model, "lm_head"):
        hidden = model.base_model(**kwargs).last_hidden_state
        return model.lm_head(hidden[select])
    return model(**kwargs).logits[select]


@dataclass
class TokenLosses:
    """Cross-entropy per target token, with the (row, segment) each token belongs to."""

    losses: torch.Tensor     # (n_tokens,) float
    rows: torch.Tensor       # (n_tokens,) long
    segments: torch.Tensor   # (n_tokens,) long, 1-based segment id
    n_rows: int
    n_segments: int          # max segment id in the batch

    def total(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.losses.sum(), torch.tensor(self.losses.numel(), device=self.losses.device)

    def per_segment(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, n_segments) loss sums and token counts; column j = segment id j+1."""
        width = max(1, self.n_segments)
        flat = self.rows * width + (self.segments - 1)
        sums = torch.zeros(self.n_rows * width, dtype=self.losses.dtype, device=self.losses.device)
        counts = torch.zeros(self.n_rows * width, dtype=torch.long, device=self.losses.device)
        sums = sums.index_add(0, flat, self.losses)
        counts = counts.index_add(0, flat, torch.ones_like(flat))
        return sums.view(self.n_rows, width), counts.view(self.n_rows, width)


def _compute_token_losses(model: Any, batch: Mapping[str, torch.Tensor],
                          z_loss: float) -> TokenLosses:
    labels = batch["labels"]
    if _is_seq2seq(model, batch):
        select = labels != IGNORE_INDEX
        logits = _seq2seq_target_logits(model, batch, select)
        targets = labels[select]
        rows, cols = select.nonzero(as_tuple=True)
        segments = batch["decoder_segment_ids"][rows, cols]
    else:
        # position t predicts token t+1; the last position predicts nothing
        select = torch.zeros_like(labels, dtype=torch.bool)
        select[:, :-1] = labels[:, 1:] != IGNORE_INDEX
        logits = _causal_target_logits(model, batch, select)
        rows, cols = select.nonzero(as_tuple=True)
        targets = labels[rows, cols + 1]
        segments = batch["segment_ids"][rows, cols + 1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # softmax over a large vocab in half precision loses the loss
    losses = F.cross_entropy(logits, targets, reduction="none")
    if z_loss:
        losses = losses + z_loss * torch.logsumexp(logits, dim=-1).pow(2)
    return _token_losses_of(batch, losses, rows, segments)


def _token_losses_of(batch: Mapping[str, torch.Tensor], losses: torch.Tensor, rows: torch.Tensor,
                     segments: torch.Tensor) -> TokenLosses:
    seg_ids = batch.get("decoder_segment_ids", batch.get("segment_ids"))
    return TokenLosses(losses=losses, rows=rows, segments=segments,
                       n_rows=batch["labels"].shape[0],
                       n_segments=int(seg_ids.max()) if seg_ids.numel() else 0)


class PackedLM(torch.nn.Module):
    """The packed forward as a module: ``PackedLM(hf_model)(**batch) -> (losses, rows, segments)``.

    Wrap the model in this *before* ``accelerator.prepare`` / DDP when training with several
    processes: DDP only synchronizes gradients correctly when the forward goes through its
    wrapper, and the packed T5 forward calls the encoder and decoder stacks directly.
    ``token_losses`` / ``packed_loss`` accept this module (or a DDP-wrapped one) as ``model``.
    """

    def __init__(self, model: Any, z_loss: float = 0.0):
        super().__init__()
        self.model = model
        self.z_loss = z_loss

    def forward(self, **batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        result = _compute_token_losses(self.model, batch, self.z_loss)
        return result.losses, result.rows, result.segments


def _unwrap(model: Any) -> Any:
    """The innermost module under DDP / accelerate-style ``.module`` wrappers."""
    while isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module
    return model


def token_losses(model: Any, batch: Mapping[str, torch.Tensor], *,
                 z_loss: float = 0.0) -> TokenLosses:
    """One forward pass; CE of every target token (plus ``z_loss * logsumexp**2`` if set).

    ``model``: a Hugging Face model, a ``PackedLM``, or either under a ``.module`` wrapper (for
    a wrapped PackedLM the call goes through the wrapper; its own z_loss then applies).
    """
    core = _unwrap(model)
    if isinstance(core, PackedLM):
        return _token_losses_of(batch, *model(**batch))
    return _compute_token_losses(core, batch, z_loss)


def packed_loss(model: Any, batch: Mapping[str, torch.Tensor], *,
                z_loss: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of target-token cross-entropies, number of target tokens) for a packed batch."""
    return token_losses(model, batch, z_loss=z_loss).total()


def per_segment_losses(model: Any, batch: Mapping[str, torch.Tensor], *,
                       z_loss: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, segments) loss sums and target-token counts; segment j+1 = row.example_indices[j]."""
    return token_losses(model, batch, z_loss=z_loss).per_segment()


def packed_segment_losses(model: Any, batch: Mapping[str, torch.Tensor], *,
                          z_loss: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward: (loss_sum, per-segment sums (rows, segments), per-segment token counts)."""
    result = token_losses(model, batch, z_loss=z_loss)
    sums, counts = result.per_segment()
    return result.losses.sum(), sums, counts
