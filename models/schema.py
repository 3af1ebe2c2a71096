"""What is trained: a decoder-only transformer (ModelConfig) and one training step (Workload)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hw.schema import DTYPE_BYTES


STORAGE_BYTES = {"fp8": 2}  # dtypes whose tensors are stored wider than they compute (see Workload.dtype_bytes)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ModelConfig(Frozen):
    """A decoder-only transformer. GPT-style defaults; Llama presets set swiglu/rmsnorm/no dropout."""

    name: str = "custom"
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int | None = Field(default=None, gt=0, description="None = heads (multi-head attention)")
    ffn: int | None = Field(default=None, gt=0, description="None = 4 * hidden")
    head_dim: int | None = Field(default=None, gt=0, description="None = hidden / heads (PaLM: 256 with 48 heads)")
    vocab: int = Field(gt=0)
    activation: Literal["gelu", "swiglu", "relu"] = "gelu"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    dropout: bool = True
    tied_embeddings: bool = False
    bias: bool = True
    position: Literal["learned", "rope"] = "learned"
    seq_len: int = Field(default=2048, gt=0, description="context length the model was built for")
    # Mixture of experts (models.moe). experts = 0: a dense model, and the fields below stay unset.
    experts: int = Field(default=0, ge=0, description="routed experts per MoE layer; 0 = dense")
    experts_per_token: int | None = Field(default=None, gt=0, description="top-k: routed experts each token uses")
    expert_ffn: int | None = Field(default=None, gt=0, description="FFN size of one expert; None = ffn")
    shared_experts: int = Field(default=0, ge=0, description="experts every token uses (DeepSeekMoE), of expert_ffn each")
    moe_layer_freq: int | None = Field(default=1, ge=0, description="every k-th layer is MoE; 0/None = dense")
    first_dense_layers: int = Field(default=0, ge=0, description="the first k layers stay dense (DeepSeek)")
    expert_load_imbalance: float = Field(
        default=1.0, ge=1.0, description="tokens of the busiest expert / the average tokens x top-k / experts; "
        "1.0 = balanced (assumption: an auxiliary balance loss keeps the routing near even)")

    @model_validator(mode="after")
    def _shapes(self) -> "ModelConfig":
        if self.head_dim is None and self.hidden % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden ({self.hidden})")
        if self.kv_heads is not None:
            if self.kv_heads > self.heads or self.heads % self.kv_heads:
                raise ValueError(f"kv_heads ({self.kv_heads}) must divide heads ({self.heads})")
        return self._experts()

    def _experts(self) -> "ModelConfig":
        if not self.experts:
            unset = {"experts_per_token": None, "expert_ffn": None, "shared_experts": 0, "first_dense_layers": 0}
            for name, default in unset.items():
                if getattr(self, name) != default:
                    raise ValueError(f"{name} needs experts > 0 (experts = 0 is a dense model)")
            return self
        if self.experts_per_token is None or self.experts_per_token > self.experts:
            raise ValueError(f"experts_per_token must be 1..experts ({self.experts}) for a MoE model; "
                             f"got {self.experts_per_token}")
        if self.first_dense_layers > self.layers:
            raise ValueError(f"first_dense_layers ({self.first_dense_layers}) must be 0..layers ({self.layers})")
        return self

    def is_moe_layer(self, i: int) -> bool:
        """Layer i (0-based) is a MoE layer: DeepSeek's rule, i >= first_dense_layers and
        i % moe_layer_freq == 0 (HF DeepseekDecoderLayer)."""
        return bool(self.experts and self.moe_layer_freq) and i >= self.first_dense_layers and \
            i % self.moe_layer_freq == 0

    @property
    def moe_layers(self) -> int:
        """How many of the layers are MoE layers (0 for a dense model)."""
        return sum(self.is_moe_layer(i) for i in range(self.layers))

    @property
    def expert_ffn_size(self) -> int:
        return self.expert_ffn if self.expert_ffn is not None else self.ffn_size

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads if self.kv_heads is not None else self.heads

    @property
    def ffn_size(self) -> int:
        return self.ffn if self.ffn is not None else 4 * self.hidden

    @property
    def dim_per_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden // self.heads


class Workload(Frozen):
    """One training step: global_batch sequences of seq_len tokens, forward + backward + Adam update."""

    model: ModelConfig
    global_batch: int = Field(gt=0, description="sequences per step")
    seq_len: int = Field(default=None, gt=0, description="tokens per sequence; default the model's seq_len")
    dtype: str = "bf16"
    optimizer: Literal["adam"] = "adam"
    flash_attention: bool = Field(
        default=False,
        description="the attention core runs as one fused FlashAttention kernel (Dao et al. 2022): no s×s "
        "tensor is stored, the backward recomputes the scores (models.graph.build_graph)")

    @model_validator(mode="before")
    @classmethod
    def _default_seq(cls, data):
        if isinstance(data, dict) and data.get("seq_len") is None:
            model = data.get("model")
            seq = getattr(model, "seq_len", None) if not isinstance(model, dict) else model.get("seq_len", 2048)
            data = {**data, "seq_len": seq}
        return data

    @model_validator(mode="after")
    def _check(self) -> "Workload":
        if self.dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype {self.dtype!r} unknown; allowed: {sorted(DTYPE_BYTES)}")
        return self

    @property
    def dtype_bytes(self) -> int:
        """Bytes per element of the weights, activations, gradients and communicated tensors. FP8
        training keeps those in BF16 and casts GEMM inputs to FP8 inside the kernel (Micikevicius et
        al. 2022, "FP8 Formats for Deep Learning"; NVIDIA Transformer Engine), so fp8 stores 2 B; its
        GEMMs run at the fp8 peak (hw.Hardware.peak)."""
        return STORAGE_BYTES.get(self.dtype, DTYPE_BYTES[self.dtype])

    @property
    def tokens(self) -> int:
        return self.global_batch * self.seq_len
