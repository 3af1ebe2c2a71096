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

    @model_validator(mode="after")
    def _shapes(self) -> "ModelConfig":
        if self.head_dim is None and self.hidden % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide hidden ({self.hidden})")
        if self.kv_heads is not None:
            if self.kv_heads > self.heads or self.heads % self.kv_heads:
                raise ValueError(f"kv_heads ({self.kv_heads}) must divide heads ({self.heads})")
        return self

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
