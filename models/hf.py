"""Import a Hugging Face ``config.json`` from a local path into a ModelConfig (no network access).

Supported ``model_type`` values and how each maps onto ModelConfig:

- ``llama``, ``mistral``, ``qwen2``: SwiGLU MLP (``intermediate_size``), RMSNorm, rotary positions,
  no dropout, no biases, grouped-query attention from ``num_key_value_heads``.
- ``mixtral`` (llama-like): ``num_local_experts`` experts of ``intermediate_size``, top-k
  ``num_experts_per_tok``, every layer a MoE layer.
- ``deepseek`` (DeepSeekMoE, llama-like attention): ``n_routed_experts`` experts of
  ``moe_intermediate_size``, ``n_shared_experts``, top-k ``num_experts_per_tok``, the first
  ``first_k_dense_replace`` layers dense (FFN ``intermediate_size``), every ``moe_layer_freq``-th
  layer MoE after them. (deepseek_v2/v3 use multi-head latent attention, which ModelConfig lacks.)
- ``gpt2``: GeLU MLP (``n_inner``, default 4·hidden), LayerNorm, biases, learned positions,
  input/output embeddings always tied.
- ``gpt_neox``: GeLU MLP (``intermediate_size``), LayerNorm, biases, rotary positions
  (partial rotary and the parallel residual are ignored: neither changes weights or FLOPs).

seq_len: the context the model was built for. Where a config records the pre-training context
(``rope_scaling.original_max_position_embeddings``, as Llama 3.1 does) that is used; otherwise
``max_position_embeddings`` / ``n_positions``. Either is capped at ``max_seq_len`` (default 8192,
an assumption: long-context limits such as 32k–128k are reached by extension stages, not by
pre-training; pass ``seq_len`` to Workload to study longer sequences).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hw.loader import ConfigError, format_validation_error

from .schema import ModelConfig

DEFAULT_MAX_SEQ_LEN = 8192  # assumption: see module docstring

LLAMA_LIKE = ("llama", "mistral", "qwen2", "mixtral", "deepseek")
SUPPORTED = (*LLAMA_LIKE, "gpt2", "gpt_neox")
# config.json keys of the expert fields, per model_type: ModelConfig field -> key
MOE_KEYS = {
    "mixtral": {"experts": "num_local_experts", "experts_per_token": "num_experts_per_tok"},
    "deepseek": {"experts": "n_routed_experts", "experts_per_token": "num_experts_per_tok",
                 "expert_ffn": "moe_intermediate_size", "shared_experts": "n_shared_experts",
                 "first_dense_layers": "first_k_dense_replace", "moe_layer_freq": "moe_layer_freq"},
}


def _read(path: str | Path) -> tuple[Path, dict]:
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise ConfigError(f"Hugging Face config not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"invalid JSON in Hugging Face config {p}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Hugging Face config {p} must hold a JSON object, got {type(data).__name__}")
    return p, data


def _int(cfg: dict, key: str, *, default: Any = ..., model_type: str) -> int | None:
    if key not in cfg or cfg[key] is None:
        if default is ...:
            raise ConfigError(f"Hugging Face config ({model_type}) lacks required field {key!r}")
        return default
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"Hugging Face config field {key!r} must be an integer, got {value!r}")
    return value


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _context(cfg: dict, key: str, model_type: str, max_seq_len: int | None) -> int:
    seq = _int(cfg, key, model_type=model_type)
    scaling = cfg.get("rope_scaling")
    if isinstance(scaling, dict):
        original = scaling.get("original_max_position_embeddings")
        if isinstance(original, int) and not isinstance(original, bool) and original > 0:
            seq = min(seq, original)
    if max_seq_len is not None:
        seq = min(seq, max_seq_len)
    return seq


def _name(cfg: dict, path: Path, model_type: str) -> str:
    name = cfg.get("_name_or_path")
    if isinstance(name, str) and name.strip():
        return name.strip()
    if path.parent.name:
        return path.parent.name
    return f"hf-{model_type}"


def _check_head_dim(cfg: dict, hidden: int, heads: int, model_type: str) -> None:
    head_dim = cfg.get("head_dim")
    if head_dim is not None and heads and hidden % heads == 0 and head_dim != hidden // heads:
        raise ConfigError(
            f"Hugging Face config ({model_type}): head_dim {head_dim} differs from "
            f"hidden_size/num_attention_heads = {hidden // heads}; ModelConfig cannot represent it"
        )


def _llama_like(cfg: dict, model_type: str, max_seq_len: int | None) -> dict:
    hidden = _int(cfg, "hidden_size", model_type=model_type)
    heads = _int(cfg, "num_attention_heads", model_type=model_type)
    kv = _int(cfg, "num_key_value_heads", default=None, model_type=model_type)
    _check_head_dim(cfg, hidden, heads, model_type)
    act = cfg.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ConfigError(f"Hugging Face config ({model_type}): hidden_act {act!r} unsupported; allowed: silu")
    return dict(
        layers=_int(cfg, "num_hidden_layers", model_type=model_type),
        hidden=hidden,
        heads=heads,
        kv_heads=None if kv in (None, heads) else kv,
        ffn=_int(cfg, "intermediate_size", model_type=model_type),
        vocab=_int(cfg, "vocab_size", model_type=model_type),
        seq_len=_context(cfg, "max_position_embeddings", model_type, max_seq_len),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        activation="swiglu",
        norm="rmsnorm",
        dropout=False,
        # Qwen2 (and Llama configs with attention_bias) carry biases on q/k/v only: a few
        # hidden-sized vectors per layer (< 0.01% of the weights). ModelConfig's single `bias`
        # flag means biases on every linear, so these are approximated as bias=False.
        bias=False,
        position="rope",
    )


def _moe(cfg: dict, model_type: str) -> dict:
    """The expert fields of a MoE config.json (none for a dense one: experts absent, null or 0)."""
    keys = MOE_KEYS.get(model_type, {})
    if not _int(cfg, keys.get("experts", ""), default=0, model_type=model_type):
        return {}
    out = {field: _int(cfg, key, default=None, model_type=model_type) for field, key in keys.items()}
    return {field: value for field, value in out.items() if value is not None}


def _gpt2(cfg: dict, max_seq_len: int | None) -> dict:
    mt = "gpt2"
    act = cfg.get("activation_function", "gelu_new")
    dropout = any(_positive(cfg.get(k, 0.1)) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop"))
    seq = _int(cfg, "n_positions", model_type=mt)
    if max_seq_len is not None:
        seq = min(seq, max_seq_len)
    return dict(
        layers=_int(cfg, "n_layer", model_type=mt),
        hidden=_int(cfg, "n_embd", model_type=mt),
        heads=_int(cfg, "n_head", model_type=mt),
        ffn=_int(cfg, "n_inner", default=None, model_type=mt),
        vocab=_int(cfg, "vocab_size", model_type=mt),
        seq_len=seq,
        tied_embeddings=True,  # GPT2LMHeadModel always ties lm_head to wte
        activation="relu" if act == "relu" else "gelu",
        norm="layernorm",
        dropout=dropout,
        bias=True,
        position="learned",
    )


def _gpt_neox(cfg: dict, max_seq_len: int | None) -> dict:
    mt = "gpt_neox"
    hidden = _int(cfg, "hidden_size", model_type=mt)
    heads = _int(cfg, "num_attention_heads", model_type=mt)
    act = cfg.get("hidden_act", "gelu")
    dropout = any(_positive(cfg.get(k, 0.0)) for k in ("hidden_dropout", "attention_dropout"))
    return dict(
        layers=_int(cfg, "num_hidden_layers", model_type=mt),
        hidden=hidden,
        heads=heads,
        ffn=_int(cfg, "intermediate_size", default=None, model_type=mt),
        vocab=_int(cfg, "vocab_size", model_type=mt),
        seq_len=_context(cfg, "max_position_embeddings", mt, max_seq_len),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        activation="relu" if act == "relu" else "gelu",
        norm="layernorm",
        dropout=dropout,
        bias=True,
        position="rope",
    )


def hf_fields(cfg: dict, *, max_seq_len: int | None = DEFAULT_MAX_SEQ_LEN) -> dict:
    """The ModelConfig fields (without name) for a parsed config.json dict."""
    model_type = cfg.get("model_type")
    if model_type in LLAMA_LIKE:
        return _llama_like(cfg, model_type, max_seq_len) | _moe(cfg, model_type)
    if model_type == "gpt2":
        return _gpt2(cfg, max_seq_len)
    if model_type == "gpt_neox":
        return _gpt_neox(cfg, max_seq_len)
    raise ConfigError(
        f"unsupported Hugging Face model_type {model_type!r}; supported: {', '.join(SUPPORTED)}"
    )


def load_hf_config(path: str | Path, *, max_seq_len: int | None = DEFAULT_MAX_SEQ_LEN) -> ModelConfig:
    """A ModelConfig from a local config.json (a file, or a directory that contains config.json)."""
    p, cfg = _read(path)
    fields = hf_fields(cfg, max_seq_len=max_seq_len)
    fields["name"] = _name(cfg, p, str(cfg.get("model_type")))
    try:
        return ModelConfig.model_validate(fields)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, f"model from {p}")) from None
