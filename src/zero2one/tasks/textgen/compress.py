"""Language models in INT8: ``zero2one compress MODEL --method int8-weights``.

Every matrix of the model (attention and MLP projections, the embedding and output head) is
rounded to int8 per output row with a bfloat16 scale (:class:`.fast.Int8Weight`) and stored
so: a quarter of float32's bytes. Activations stay in floating point — rounding them too
(``torch.ao``'s dynamic quantization, per tensor) raised SmolLM2's held-out perplexity from
130.8 to 453.5 here, while int8 weights alone moved it to 131.2. The loaded model computes with
exactly the stored values: transformers' forward (prompts, perplexity) with them dequantized,
the decoding step (:mod:`.fast`) with the int8 matrices themselves where that is faster on
this CPU. A compression that raises the held-out perplexity by more than
:data:`MAX_PERPLEXITY_RISE` is refused.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from zero2one.convert import Conversion
from zero2one.errors import ArtifactError, ConversionError, DataError
from zero2one.tasks.textgen.data import tokenize
from zero2one.tasks.textgen.fast import Int8Weight, release, round_to_int8, stepper_for
from zero2one.tasks.textgen.models import load_tokenizer

if TYPE_CHECKING:
    from zero2one.progress import Reporter
    from zero2one.tasks.textgen.task import TextData, TextGeneration

MAX_PERPLEXITY_RISE = 0.02
WEIGHTS = "model.safetensors"
BENCH_PROMPT_TOKENS = 64


def _matrices(model: Any) -> list[torch.Tensor]:
    """The model's 2-D weights (each once, however often it is tied)."""
    seen: set[int] = set()
    found = []
    for name, tensor in model.state_dict().items():
        if (tensor.dim() == 2 and tensor.is_floating_point() and name.endswith(".weight")
                and tensor.data_ptr() not in seen):
            seen.add(tensor.data_ptr())
            found.append(tensor)
    return found


def quantized_copy(model: Any) -> Any:
    """A copy of ``model`` whose matrices hold their int8-rounded values."""
    release(model)  # the decoding step's fused copies are not worth copying
    new = copy.deepcopy(model)
    with torch.no_grad():
        for weight in _matrices(new):
            weight.copy_(round_to_int8(weight))
    new.__dict__["_zero2one_precision"] = "int8"  # the decoding step's default
    return new


def int8_weights(task: TextGeneration, data: TextData, *, options: Any,
                 reporter: Reporter) -> Any:
    if options.calibration is not None or options.epochs is not None:
        raise DataError("--calibration and --epochs do not apply to --method int8-weights "
                        "(weights are rounded per row; nothing is calibrated or trained)")
    if next(task.model_.parameters()).dtype != torch.float32:
        raise ConversionError("int8-weights compresses a float32 model")
    with reporter.step("held-out perplexity, float32"):
        measured = task.evaluate(data)
    with reporter.step("rounding weights to int8"):
        new = task.derived(quantized_copy(task.model_), runtime="int8")
    with reporter.step("held-out perplexity, int8"):
        measured_new = new.evaluate(data)
    before, after = measured["val_perplexity"], measured_new["val_perplexity"]
    rise = after / before - 1
    if rise > MAX_PERPLEXITY_RISE:
        raise ConversionError(f"int8 weights raise the held-out perplexity from {before:.4g} "
                              f"to {after:.4g} ({rise:+.1%}, more than "
                              f"{MAX_PERPLEXITY_RISE:.0%}); nothing was written")
    unique = {w.data_ptr(): w for w in task.model_.state_dict().values()
              if w.is_floating_point()}  # a tied head counts once, as it is saved
    float_bytes = sum(w.numel() * 4 for w in unique.values())
    details = {"perplexity_float32": before, "perplexity_int8": after,
               "perplexity_change": rise}
    return Conversion(new, "int8-weights", details,
                      baselines=[task.derived(task.model_, runtime="float32")],
                      sizes=[float_bytes, float_bytes, None],
                      # the float32 step computes with the parent's weights: its metrics
                      metrics=[measured, measured, measured_new])


# ---- the model directory ----------------------------------------------------------------

def save_int8(model: Any, tokenizer: Any, directory: Path) -> None:
    from safetensors.torch import save_file

    directory.mkdir()
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # a tied weight (the output head): stored once
            continue
        seen.add(tensor.data_ptr())
        if tensor.dim() == 2 and tensor.is_floating_point() and name.endswith(".weight"):
            rounded = Int8Weight.of(tensor)
            tensors[f"{name}.int8"], tensors[f"{name}.scale"] = rounded.q, rounded.scale
        else:
            tensors[name] = tensor.detach().contiguous()
    save_file(tensors, directory / WEIGHTS, metadata={"format": "zero2one-int8-weights"})
    model.config.save_pretrained(directory)
    model.generation_config.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def load_int8(directory: Path) -> tuple[Any, Any]:
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    try:
        config = AutoConfig.from_pretrained(str(directory))
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        stored = load_file(directory / WEIGHTS)
        state = {}
        for name, tensor in stored.items():
            if name.endswith(".int8"):
                base = name.removesuffix(".int8")
                state[base] = Int8Weight(tensor, stored[f"{base}.scale"]).dequantize()
            elif not name.endswith(".scale"):
                state[name] = tensor
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
        if set(missing) - tied or unexpected:
            raise ArtifactError(f"{directory}: the int8 weights do not fit the model's config "
                                f"(missing {sorted(missing)[:3]}, unexpected "
                                f"{sorted(unexpected)[:3]})")
        model.tie_weights()
        model.generation_config = GenerationConfig.from_pretrained(str(directory))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{directory}: cannot rebuild the int8 model ({exc})") from None
    model = model.eval()
    model.__dict__["_zero2one_precision"] = "int8"
    return model, load_tokenizer(directory)


# ---- the report's timings -----------------------------------------------------------------

def bench_call(task: TextGeneration, data: TextData, batch_size: int) -> Any:
    """One decoding step for ``batch_size`` rows after a prompt from the held-out data:
    transformers' forward (``runtime_`` None) or zero2one's step at ``runtime_``."""

    model = task.model_
    encoded = tokenize(data.val.select(range(1)), task.tokenizer_, data.kind, task.config.data)
    ids = torch.tensor(encoded[0]["input_ids"][:BENCH_PROMPT_TOKENS]).repeat(batch_size, 1)
    mask = torch.ones_like(ids)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1)
    token = out.logits[:, -1].argmax(-1)
    last = positions[:, -1] + 1
    if task.runtime_ is None:
        state = {"cache": out.cache, "mask": mask, "last": last}

        def forward() -> Any:
            state["mask"] = torch.cat([state["mask"], torch.ones((batch_size, 1),
                                                                 dtype=torch.long)], 1)
            with torch.no_grad():
                step = model(input_ids=token[:, None], attention_mask=state["mask"],
                             position_ids=state["last"][:, None], cache=state["cache"],
                             use_cache=True)
            state["cache"], state["last"] = step.cache, state["last"] + 1
            return step.logits
        return forward
    stepper = stepper_for(model, task.runtime_)
    if stepper is None:
        raise ConversionError("zero2one's decoding step does not apply to this model")
    kv = stepper.adopt(out.cache, 1)
    filled = kv.length
    mask = torch.cat([mask, torch.ones((batch_size, 1), dtype=torch.long)], 1)

    def step() -> Any:
        kv.length = filled  # the same slot each time: a step at a constant context length
        return stepper.step(kv, token, mask, last)
    return step
