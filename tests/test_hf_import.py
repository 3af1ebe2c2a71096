"""Import of local Hugging Face config.json files (models.load(path) / models.hf.load_hf_config)."""

from __future__ import annotations

import json

import pytest

import models
from hw.loader import ConfigError
from models.hf import load_hf_config

# Shapes below are those of the public configs (Llama-2-7b-hf, Meta-Llama-3.1-405B,
# Mistral-7B-v0.1, Qwen2-7B, gpt2, pythia-1.4b); only the fields the importer reads are kept.
LLAMA2_7B = {
    "model_type": "llama", "_name_or_path": "meta-llama/Llama-2-7b-hf",
    "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
    "max_position_embeddings": 4096, "tie_word_embeddings": False, "hidden_act": "silu",
}
LLAMA31_405B = {
    "model_type": "llama", "hidden_size": 16384, "intermediate_size": 53248,
    "num_hidden_layers": 126, "num_attention_heads": 128, "num_key_value_heads": 8,
    "vocab_size": 128256, "max_position_embeddings": 131072, "tie_word_embeddings": False,
    "rope_scaling": {"factor": 8.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
}
MISTRAL_7B = {
    "model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "vocab_size": 32000, "max_position_embeddings": 32768, "tie_word_embeddings": False,
}
QWEN2_7B = {
    "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
    "vocab_size": 152064, "max_position_embeddings": 131072, "tie_word_embeddings": False,
}
GPT2 = {
    "model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "n_inner": None,
    "vocab_size": 50257, "n_positions": 1024, "activation_function": "gelu_new",
    "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
}
NEOX = {
    "model_type": "gpt_neox", "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 24, "num_attention_heads": 16, "vocab_size": 50304,
    "max_position_embeddings": 2048, "tie_word_embeddings": False, "hidden_act": "gelu",
    "rotary_pct": 0.25, "use_parallel_residual": True,
}


def _write(tmp_path, cfg, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(cfg))
    return path


def test_llama2_7b_matches_preset(tmp_path):
    m = models.load(str(_write(tmp_path, LLAMA2_7B)))
    assert m.name == "meta-llama/Llama-2-7b-hf"
    assert (m.layers, m.hidden, m.heads, m.n_kv_heads, m.ffn_size, m.vocab, m.seq_len) == (
        32, 4096, 32, 32, 11008, 32000, 4096)
    assert m.kv_heads is None
    assert (m.activation, m.norm, m.dropout, m.bias, m.position, m.tied_embeddings) == (
        "swiglu", "rmsnorm", False, False, "rope", False)
    preset = models.load("llama2-7b")
    assert m.model_dump(exclude={"name"}) == preset.model_dump(exclude={"name"})


def test_directory_path_and_pathlike(tmp_path):
    _write(tmp_path, LLAMA2_7B)
    assert models.load(tmp_path).hidden == 4096
    assert load_hf_config(tmp_path / "config.json").layers == 32


def test_llama31_uses_pretraining_context(tmp_path):
    m = models.load(_write(tmp_path, LLAMA31_405B))
    assert (m.layers, m.hidden, m.heads, m.n_kv_heads, m.ffn_size, m.vocab) == (
        126, 16384, 128, 8, 53248, 128256)
    assert m.seq_len == 8192
    preset = models.load("llama3.1-405b")
    assert m.model_dump(exclude={"name"}) == preset.model_dump(exclude={"name"})


def test_mistral(tmp_path):
    m = models.load(_write(tmp_path, MISTRAL_7B))
    assert (m.layers, m.hidden, m.heads, m.kv_heads, m.ffn, m.vocab) == (32, 4096, 32, 8, 14336, 32000)
    assert m.seq_len == 8192  # 32768 capped at the default max_seq_len
    assert load_hf_config(tmp_path / "config.json", max_seq_len=None).seq_len == 32768
    assert (m.activation, m.norm, m.position, m.bias, m.dropout) == ("swiglu", "rmsnorm", "rope", False, False)


def test_qwen2_bias_approximated(tmp_path):
    m = models.load(_write(tmp_path, QWEN2_7B))
    assert (m.layers, m.hidden, m.heads, m.kv_heads, m.ffn, m.vocab) == (28, 3584, 28, 4, 18944, 152064)
    assert m.bias is False  # q/k/v-only biases approximated as no bias
    assert m.tied_embeddings is False


def test_qwen2_tied(tmp_path):
    m = models.load(_write(tmp_path, {**QWEN2_7B, "tie_word_embeddings": True}))
    assert m.tied_embeddings is True


def test_gpt2(tmp_path):
    m = models.load(_write(tmp_path, GPT2))
    assert (m.layers, m.hidden, m.heads, m.ffn_size, m.vocab, m.seq_len) == (12, 768, 12, 3072, 50257, 1024)
    assert m.ffn is None
    assert (m.activation, m.norm, m.bias, m.position, m.tied_embeddings, m.dropout) == (
        "gelu", "layernorm", True, "learned", True, True)


def test_gpt2_n_inner_and_no_dropout(tmp_path):
    cfg = {**GPT2, "n_inner": 4000, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    m = models.load(_write(tmp_path, cfg))
    assert m.ffn == 4000 and m.dropout is False


def test_gpt_neox(tmp_path):
    m = models.load(_write(tmp_path, NEOX))
    assert (m.layers, m.hidden, m.heads, m.ffn, m.vocab, m.seq_len) == (24, 2048, 16, 8192, 50304, 2048)
    assert (m.activation, m.norm, m.bias, m.position, m.tied_embeddings, m.dropout) == (
        "gelu", "layernorm", True, "rope", False, False)


def test_unsupported_model_type(tmp_path):
    path = _write(tmp_path, {"model_type": "t5", "d_model": 512})
    with pytest.raises(ConfigError) as err:
        models.load(path)
    msg = str(err.value)
    assert "'t5'" in msg
    for supported in ("llama", "mistral", "qwen2", "gpt2", "gpt_neox"):
        assert supported in msg


def test_missing_model_type(tmp_path):
    with pytest.raises(ConfigError, match="model_type"):
        models.load(_write(tmp_path, {"hidden_size": 10}))


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "nowhere" / "config.json"
    with pytest.raises(ConfigError) as err:
        models.load(str(missing))
    assert str(missing) in str(err.value)
    assert isinstance(err.value, ValueError)


def test_directory_without_config(tmp_path):
    with pytest.raises(ConfigError, match="config.json"):
        load_hf_config(tmp_path)


def test_invalid_json(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        models.load(path)


def test_json_not_an_object(tmp_path):
    with pytest.raises(ConfigError):
        models.load(_write(tmp_path, [1, 2, 3]))


def test_missing_required_field(tmp_path):
    cfg = {k: v for k, v in LLAMA2_7B.items() if k != "intermediate_size"}
    with pytest.raises(ConfigError, match="intermediate_size"):
        models.load(_write(tmp_path, cfg))


def test_non_integer_field(tmp_path):
    with pytest.raises(ConfigError, match="hidden_size"):
        models.load(_write(tmp_path, {**LLAMA2_7B, "hidden_size": "4096"}))


def test_invalid_shape_reported_as_config_error(tmp_path):
    with pytest.raises(ConfigError, match="heads"):
        models.load(_write(tmp_path, {**LLAMA2_7B, "num_attention_heads": 30}))


def test_head_dim_not_representable(tmp_path):
    cfg = {**MISTRAL_7B, "hidden_size": 5120, "num_attention_heads": 32, "head_dim": 128}
    with pytest.raises(ConfigError, match="head_dim"):
        models.load(_write(tmp_path, cfg))
