"""A lean decoding step for Llama-family models (Llama, SmolLM2, ...).

On a CPU a small model's decoding step should cost about the time it takes to read its weights;
transformers' generic forward spends most of a step elsewhere (mask building, cache objects,
hooks, three projections where one would do). After transformers' own forward has run the
prompt, :class:`LlamaStepper` runs each further step with the same weights fused into fewer,
larger matrix products (q/k/v in one, gate/up in one) and a preallocated key/value cache.
``tests/tasks/test_textgen.py`` checks its logits against transformers' step by step.

Anything it does not recognise (another architecture, biases, sliding windows) keeps the
generic path: :func:`stepper_for` returns ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from zero2one.tasks.textgen.models import weights_state

# weights of the decoding step's matrix products. bfloat16: on the 2-core AVX2 machine this was
# written on, a SmolLM2-135M step takes 18 ms instead of 53 ms, and the perplexity of the
# held-out answers of examples/zero2one-qa moves from 166.81 to 167.02. That holds for one row.
# For several rows it depends on the CPU: on that AVX2 machine a bfloat16 product cost about as
# much per row as alone (3072×576 weights: 0.2 ms for 1 row, 1.0 ms for 8) while float32 cost
# the same for 2 to 8 rows (0.5 ms); on an AVX-512 BF16 machine 8 rows took 0.09 ms in
# bfloat16 against 0.18 ms in float32 (8 streams: 172 against 94 tokens/s). So batched steps
# measure both once per batch size and keep the faster (:func:`batch_precision`)
# int8: weights rounded to int8 per output channel (symmetric, bfloat16 scales: what
# ``zero2one compress --method int8-weights`` stores), multiplied by ``_weight_int8pack_mm``
# with bfloat16 activations — a quarter of float32's bytes per token
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.int8}
DEFAULT_PRECISION = "bfloat16"


class Int8Weight:
    """A weight matrix (out, in) as int8 values and one bfloat16 scale per output row."""

    __slots__ = ("dtype", "q", "scale")

    def __init__(self, q: torch.Tensor, scale: torch.Tensor) -> None:
        self.q, self.scale, self.dtype = q.contiguous(), scale.contiguous(), torch.int8

    @classmethod
    def of(cls, weight: torch.Tensor) -> Int8Weight:
        w = weight.detach().float()
        scale = (w.abs().amax(1) / 127).clamp(min=1e-12).to(torch.bfloat16)
        q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
        return cls(q, scale)

    def dequantize(self) -> torch.Tensor:
        return self.q.float() * self.scale.float()[:, None]


def default_precision(model: Any) -> str:
    """The decoding step's precision when none is asked for: int8 for a model compressed to
    int8 weights (``zero2one compress --method int8-weights``), else bfloat16."""
    return str(model.__dict__.get("_zero2one_precision") or DEFAULT_PRECISION)


def round_to_int8(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` as :class:`Int8Weight` computes with it (float32): quantized, dequantized.
    Quantizing the result again gives the same int8 values and scales."""
    return Int8Weight.of(weight).dequantize()


def supports(model: Any) -> bool:
    cfg = getattr(model, "config", None)
    return (
        cfg is not None
        and getattr(cfg, "model_type", None) == "llama"
        and type(model).__name__ == "LlamaForCausalLM"
        and getattr(cfg, "hidden_act", None) == "silu"
        and not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
        and getattr(cfg, "pretraining_tp", 1) == 1
        and next(model.parameters()).device.type == "cpu"
        and next(model.parameters()).dtype == torch.float32
    )


def _prepare(weight: torch.Tensor, dtype: torch.dtype) -> Any:
    # (float32 stored transposed made one row's product faster here, 0.37 against 0.66 ms for
    # 3072×576, but eight rows' slower, 99-127 against 87-114 ms a step: not worth two layouts)
    if dtype is torch.int8:
        return Int8Weight.of(weight)
    return weight.detach().to(dtype).contiguous()


def linear(x: torch.Tensor, weight: Any) -> torch.Tensor:
    """``x @ weight.T`` in float32 out, for any of the :data:`PRECISIONS`."""
    if isinstance(weight, Int8Weight):
        return torch.ops.aten._weight_int8pack_mm(x.to(torch.bfloat16).contiguous(),
                                                  weight.q, weight.scale).float()
    if weight.dtype is torch.float32:
        return F.linear(x, weight)
    return F.linear(x.to(weight.dtype), weight).float()


class _Layer:
    __slots__ = ("down", "gate_up", "ln1", "ln2", "o", "qkv")

    def __init__(self, layer: Any, dtype: torch.dtype) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        self.qkv = _prepare(torch.cat([attn.q_proj.weight, attn.k_proj.weight,
                                       attn.v_proj.weight]), dtype)
        self.o = _prepare(attn.o_proj.weight, dtype)
        self.gate_up = _prepare(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), dtype)
        self.down = _prepare(mlp.down_proj.weight, dtype)
        self.ln1 = layer.input_layernorm.weight.detach()
        self.ln2 = layer.post_attention_layernorm.weight.detach()


@dataclass
class KV:
    """One generation's key/value cache: per layer (B, kv_heads, capacity, head_dim)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int  # positions filled


class LlamaStepper:
    """Decoding steps for a batch whose prompt transformers has already run.

    ``precision`` is that of the weights in the step's matrix products (activations, norms,
    attention and the cache stay float32): ``float32`` gives transformers' logits; ``bfloat16``
    reads half the bytes per token (3× faster here; see :data:`PRECISIONS`)."""

    def __init__(self, model: Any, precision: str = "float32") -> None:
        cfg = model.config
        self.model = model
        self.dtype = PRECISIONS[precision]
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.eps = cfg.rms_norm_eps
        inner = model.model
        self.embed = inner.embed_tokens.weight.detach()
        self.norm = inner.norm.weight.detach()
        self.head = _prepare(model.lm_head.weight, self.dtype)
        self.rotary = inner.rotary_emb  # transformers' own: every rope scaling it knows
        self.layers = [_Layer(layer, self.dtype) for layer in inner.layers]
        self.q_size = self.heads * self.head_dim
        self.kv_size = self.kv_heads * self.head_dim
        self.version = weights_state(model)

    def adopt(self, cache: Any, room: int) -> KV:
        """Take over transformers' cache after the prompt, with ``room`` more positions."""
        kv = KV([], [], cache.layers[0].keys.shape[2])
        for layer in cache.layers:
            k, v = layer.keys, layer.values  # (B, kv_heads, T, head_dim)
            shape = (k.shape[0], k.shape[1], k.shape[2] + room, k.shape[3])
            keys, values = k.new_empty(shape), v.new_empty(shape)
            keys[:, :, : k.shape[2]] = k
            values[:, :, : v.shape[2]] = v
            kv.keys.append(keys)
            kv.values.append(values)
        return kv

    def _linear(self, x: torch.Tensor, weight: Any) -> torch.Tensor:
        return linear(x, weight)

    @torch.inference_mode()
    def step(self, kv: KV, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
             ) -> torch.Tensor:
        """Logits (B, V) for one new token per row; ``mask`` (B, T+1) covers the cache and the
        new token, ``positions`` (B,) are the new tokens' positions."""
        batch, t = ids.shape[0], kv.length
        x = self.embed[ids]  # (B, H)
        cos, sin = self.rotary(x[:, None, :], positions[:, None])  # (B, 1, D)
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, 1, D): broadcast over heads
        allowed = mask[:, None, None, : t + 1].bool()
        half = self.head_dim // 2
        for i, layer in enumerate(self.layers):
            h = F.rms_norm(x, (x.shape[-1],), layer.ln1, self.eps)
            qkv = self._linear(h, layer.qkv)
            q = qkv[:, : self.q_size].view(batch, self.heads, 1, self.head_dim)
            k = qkv[:, self.q_size: self.q_size + self.kv_size].view(
                batch, self.kv_heads, 1, self.head_dim)
            v = qkv[:, self.q_size + self.kv_size:].view(batch, self.kv_heads, 1, self.head_dim)
            q = q * cos + torch.cat((-q[..., half:], q[..., :half]), -1) * sin
            k = k * cos + torch.cat((-k[..., half:], k[..., :half]), -1) * sin
            kv.keys[i][:, :, t: t + 1] = k
            kv.values[i][:, :, t: t + 1] = v
            attended = F.scaled_dot_product_attention(
                q, kv.keys[i][:, :, : t + 1], kv.values[i][:, :, : t + 1],
                attn_mask=allowed, enable_gqa=self.kv_heads != self.heads)
            x = x + self._linear(attended.reshape(batch, self.q_size), layer.o)
            h = F.rms_norm(x, (x.shape[-1],), layer.ln2, self.eps)
            gate, up = self._linear(h, layer.gate_up).chunk(2, dim=-1)
            x = x + self._linear(F.silu(gate) * up, layer.down)
        kv.length = t + 1
        return self._linear(F.rms_norm(x, (x.shape[-1],), self.norm, self.eps), self.head)


def stepper_for(model: Any, precision: str = DEFAULT_PRECISION) -> LlamaStepper | None:
    """The lean stepper for ``model`` at ``precision`` (built once, kept on the model), or None
    where it does not apply."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    if not supports(model):
        return None
    steppers = model.__dict__.setdefault("_zero2one_steppers", {})
    stepper = steppers.get(precision)
    if stepper is None or stepper.version != weights_state(model):  # weights changed: fuse again
        stepper = steppers[precision] = LlamaStepper(model, precision)
    return stepper


def batch_precision(model: Any, precision: str, rows: int) -> str:
    """The weights' precision for a step of ``rows`` rows: ``float32`` (exact) as asked;
    ``bfloat16`` for one row; otherwise the fastest on this CPU of the asked precision and the
    more exact ones (int8: bfloat16 and float32; bfloat16: float32), timed once per
    power-of-two batch size on the largest matrix, the output head."""
    if precision == "float32" or not supports(model) or (rows == 1 and
                                                         precision == "bfloat16"):
        return precision
    bucket = 1 << (rows - 1).bit_length()
    chosen = model.__dict__.setdefault("_zero2one_batch_precision", {})
    key = (precision, bucket)
    if key not in chosen:
        candidates = {"int8": ("int8", "bfloat16", "float32"),
                      "bfloat16": ("bfloat16", "float32")}[precision]
        weight = model.lm_head.weight.detach()
        x = torch.randn(bucket, weight.shape[1])
        times = {}
        for candidate in candidates:
            prepared = _prepare(weight, PRECISIONS[candidate])
            times[candidate] = _best_time(lambda w=prepared: linear(x, w))
        chosen[key] = min(candidates, key=lambda c: times[c])
    return str(chosen[key])


def _best_time(call: Any, repeat: int = 5) -> float:
    import time

    call()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def release(model: Any) -> None:
    """Drop the steppers (and their copies of the weights) kept on ``model``."""
    model.__dict__.pop("_zero2one_steppers", None)
    model.__dict__.pop("_zero2one_batch_precision", None)
