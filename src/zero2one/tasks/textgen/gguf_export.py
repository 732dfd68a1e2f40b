"""Language models out to llama.cpp and Ollama: one GGUF file (weights, tokenizer, chat template).

    zero2one export MODEL_REF --format gguf [--quant f16|q8_0|q4_0|q4_1]

The fine-tuned model (its LoRA adapter merged) is written with the ``gguf`` package's
``GGUFWriter`` and NumPy quantizers, tensor names mapped by its ``TensorNameMap`` and the query
and key projections permuted as llama.cpp's own converter does. Before anything is kept, the
file is loaded back through transformers (``gguf_file=``): the tokenizer must encode held-out
prompts to the same ids and the logits must match the source model's within the tolerance of
the quantization. A ``Modelfile`` for Ollama is written beside it.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zero2one.convert import Conversion
from zero2one.errors import ConversionError
from zero2one.refs import resolve
from zero2one.tasks.textgen.models import gguf_loading

if TYPE_CHECKING:
    from zero2one.progress import Reporter
    from zero2one.tasks.textgen.task import TextData, TextGeneration

GGUF_FILE = "model.gguf"
MODELFILE = "Modelfile"
QUANTS = ("f16", "q8_0", "q4_0", "q4_1")
DEFAULT_QUANT = "q8_0"
# the logits' RMS difference from the source model's, relative to their spread, at most (on
# SmolLM2-135M: f16 0.002, q8_0 0.03, q4_1 0.16; a quantization that does worse is refused)
TOLERANCE = {"f16": 0.01, "q8_0": 0.08, "q4_0": 0.4, "q4_1": 0.4}
FILE_TYPES = {"f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7}  # llama.cpp's general.file_type
SUPPORTED = ("LlamaForCausalLM",)  # SmolLM2, Llama, TinyLlama, ...
# the token embeddings (and the output head, which small models tie to them) stay 8-bit in a
# 4-bit file, as in llama.cpp's: at 4 bits they cost a tuned SmolLM2 most of what it learned
EIGHT_BIT = ("token_embd.weight", "output.weight")
FOUR_BIT = ("Q4_0", "Q4_1")


def export_gguf(task: TextGeneration, data: TextData, quant: str, *,
                reporter: Reporter, accept_loss: bool = False) -> Any:
    """The model as a GGUF file, checked; a :class:`~zero2one.convert.Conversion` whose new
    model computes with the file's weights as transformers reads them. A fine-tuned model's
    export must also keep most of what training gained (:func:`check_gain`) unless
    ``accept_loss``."""

    model = task.model_
    architecture = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
    if type(model).__name__ not in SUPPORTED:
        raise ConversionError(f"GGUF export maps {', '.join(SUPPORTED)} models; this one is "
                              f"{architecture}")
    directory = Path(tempfile.mkdtemp(prefix="zero2one-gguf-"))
    path = directory / GGUF_FILE
    try:
        with reporter.step(f"writing {quant} GGUF"):
            write(model, task.tokenizer_, path, quant, pre=pre_tokenizer(task))
        with reporter.step("loading it back through transformers"):
            back, tokenizer = read(path)
        with reporter.step("comparing logits on held-out prompts"):
            error = check(model, task.tokenizer_, back, tokenizer, held_out_prompts(data), quant)
        new = task.derived(back, runtime=None)
        new.tokenizer_ = tokenizer
        with reporter.step("held-out perplexity: the model, its export and its base"):
            scores = [task.evaluate(data), new.evaluate(data)]
            base = _base_scores(task, data)
        kept = check_gain(base, scores[0], scores[1], quant, accept_loss=accept_loss)
        if kept is not None:
            reporter.info(f"[export] {quant} keeps {kept['gain_kept']:.0%} of what fine-tuning "
                          f"gained (held-out perplexity {kept['perplexity_tuned']:.4g} tuned, "
                          f"{kept['perplexity_export']:.4g} exported, "
                          f"{kept['perplexity_base']:.4g} untuned)")
        (directory / MODELFILE).write_text(modelfile(task.tokenizer_))
    except BaseException:  # nothing of a refused export stays behind
        shutil.rmtree(directory, ignore_errors=True)
        raise
    # the file lives as long as the model made of it (saving copies it into the model directory)
    weakref.finalize(new, shutil.rmtree, directory, True)
    new.gguf_ = path
    new.quant_ = quant
    details = {"quantization": quant, "logits_relative_rms_error": error,
               "tolerance": TOLERANCE[quant], "gguf_bytes": path.stat().st_size,
               "architecture": architecture, **(kept or {})}
    unique = {w.data_ptr(): w for w in model.state_dict().values() if w.is_floating_point()}
    float_bytes = sum(w.numel() * 4 for w in unique.values())  # the parent as float32
    return Conversion(new, f"gguf-{quant}", details,
                      sizes=[float_bytes, path.stat().st_size + len(modelfile(task.tokenizer_))],
                      metrics=list(scores))


# at least this share of what fine-tuning gained in held-out perplexity must survive an export
# (the guide's LoRA SmolLM2 as q4_1 kept 8 %: 79.1 tuned, 126.8 exported, 130.8 untuned)
MIN_GAIN_KEPT = 0.5
MIN_GAIN = 0.02  # a gain below 2 % of the base's perplexity is not judged


def check_gain(base: dict[str, float] | None, tuned: dict[str, float],
               exported: dict[str, float], quant: str, *,
               accept_loss: bool = False) -> dict[str, float] | None:
    """How much of fine-tuning's gain in held-out perplexity the export keeps (None where
    there is no base to compare with, or training gained nothing); raises when it keeps less
    than :data:`MIN_GAIN_KEPT`, unless ``accept_loss``."""
    key = "val_perplexity"
    if base is None or not all(key in s for s in (base, tuned, exported)):
        return None
    gained = base[key] - tuned[key]
    if gained <= MIN_GAIN * base[key]:  # too little to tell from the quantization's noise
        return None
    kept = 1 - (exported[key] - tuned[key]) / gained
    if kept < MIN_GAIN_KEPT and not accept_loss:
        better = "q8_0" if quant != "q8_0" else "f16"
        raise ConversionError(
            f"{quant} GGUF undoes most of the fine-tuning: it keeps {kept:.0%} of what training "
            f"gained (held-out perplexity {tuned[key]:.4g} tuned, {exported[key]:.4g} as "
            f"{quant}, {base[key]:.4g} untuned); --quant {better} keeps it, --accept-loss keeps "
            "this one anyway; nothing was written")
    return {"perplexity_tuned": tuned[key], "perplexity_export": exported[key],
            "perplexity_base": base[key], "gain_kept": kept}


def _base_scores(task: TextGeneration, data: TextData) -> dict[str, float] | None:
    """The untuned base's held-out scores, for a model zero2one fine-tuned (None otherwise)."""
    base = task.config.model.base
    if not getattr(task, "manifest", None) or not base or task.config.model.method == "dpo":
        return None
    untuned = type(task).from_pretrained(resolve(base))
    return untuned.evaluate(data)


def write(model: Any, tokenizer: Any, path: Path, quant: str, *, pre: str = "default") -> None:
    """``model`` (a Llama-family causal LM) and ``tokenizer`` (byte-level BPE) as one GGUF."""
    import gguf
    import numpy as np

    if quant not in QUANTS:
        raise ConversionError(f"--quant {quant}: one of {', '.join(QUANTS)}")
    config = model.config
    kind = {"f16": gguf.GGMLQuantizationType.F16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
            "q4_0": gguf.GGMLQuantizationType.Q4_0,
            "q4_1": gguf.GGMLQuantizationType.Q4_1}[quant]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or \
        config.num_attention_heads
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(str(getattr(config, "_name_or_path", "") or "zero2one model")[-100:])
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    theta = getattr(config, "rope_theta", None) or (
        getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(getattr(config, "head_dim", None)
                                    or config.hidden_size // heads)
    writer.add_file_type(FILE_TYPES[quant])
    _tokenizer(writer, tokenizer, config.vocab_size, pre)

    seen: set[int] = set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # a tied output head: llama.cpp reads token_embd
            continue
        seen.add(tensor.data_ptr())
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ConversionError(f"GGUF export: no GGUF name for the tensor {name}")
        data = tensor.detach().float().cpu().numpy()
        if name.endswith("q_proj.weight"):
            data = _permute(data, heads)
        elif name.endswith("k_proj.weight"):
            data = _permute(data, kv_heads)
        own = kind
        if target in EIGHT_BIT and kind.name in FOUR_BIT:  # as llama.cpp's own 4-bit files do
            own = gguf.GGMLQuantizationType.Q8_0
        if data.ndim == 1:  # norms stay float32, as in llama.cpp's files
            writer.add_tensor(target, data.astype(np.float32))
        elif own == gguf.GGMLQuantizationType.F16 or data.shape[-1] % 32:
            writer.add_tensor(target, data.astype(np.float16))  # rows not in blocks of 32
        else:
            packed = gguf.quants.quantize(data, own)
            writer.add_tensor(target, packed, raw_shape=packed.shape, raw_dtype=own)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _permute(weights: Any, heads: int) -> Any:
    """llama.cpp's rotary layout of the query and key projections (its converter does this;
    transformers undoes it when it reads the file)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _tokenizer(writer: Any, tokenizer: Any, vocab_size: int, pre: str) -> None:
    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if spec["model"].get("type") != "BPE":
        raise ConversionError(f"GGUF export writes byte-level BPE tokenizers; this one is "
                              f"{spec['model'].get('type')}")
    vocab: dict[str, int] = spec["model"]["vocab"]
    special = {a["id"]: a["content"] for a in spec.get("added_tokens", []) if a.get("special")}
    tokens = [f"[PAD{i}]" for i in range(max(vocab_size, len(vocab), *[i + 1 for i in special]))]
    for token, i in vocab.items():
        tokens[i] = token
    for i, token in special.items():
        tokens[i] = token
    types = [gguf.TokenType.CONTROL if i in special else
             gguf.TokenType.UNUSED if tokens[i] == f"[PAD{i}]" else gguf.TokenType.NORMAL
             for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for add, value in ((writer.add_bos_token_id, tokenizer.bos_token_id),
                       (writer.add_eos_token_id, tokenizer.eos_token_id),
                       (writer.add_unk_token_id, tokenizer.unk_token_id),
                       (writer.add_pad_token_id, tokenizer.pad_token_id)):
        if value is not None:
            add(int(value))
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def pre_tokenizer(task: TextGeneration) -> str:
    """llama.cpp's name of the pre-tokenizer: the base GGUF's own when the model was tuned from
    one (the built-in SmolLM2: ``smollm``), else ``default``."""
    base = str(task.config.model.base)
    builtin = type(task).builtin_models.get(base.removeprefix("builtin:"))
    source = builtin.file() if base.startswith("builtin:") and builtin else None
    if source is None:
        return "default"
    return str(metadata_value(source, "tokenizer.ggml.pre") or "default")


# the GGUF value types (gguf.GGUFValueType) of fixed size, as struct formats
_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
          12: "d"}
_STRING, _ARRAY = 8, 9


def metadata_value(path: Path, key: str) -> Any:
    """One metadata value of a GGUF file (a number, a string; None where the file has no such
    key), read up to that key: gguf.GGUFReader parses every field first — SmolLM2's 49,152
    tokens took it 4.2 s for one name."""
    with path.open("rb") as fh:
        def read(fmt: str) -> Any:
            size = struct.calcsize(fmt)
            data = fh.read(size)
            if len(data) != size:
                raise ValueError(f"{path}: not a complete GGUF file")
            return struct.unpack("<" + fmt, data)[0]

        def string() -> str:
            return str(fh.read(read("Q")).decode("utf-8", "replace"))

        def value(kind: int) -> Any:
            if kind in _FIXED:
                return read(_FIXED[kind])
            if kind == _STRING:
                return string()
            if kind == _ARRAY:
                item, count = read("I"), read("Q")
                if item in _FIXED:  # skipped whole: arrays are not asked for
                    fh.seek(count * struct.calcsize(_FIXED[item]), 1)
                else:
                    for _ in range(count):
                        value(item)
                return None
            raise ValueError(f"{path}: unknown GGUF value type {kind}")

        if fh.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        read("I")  # the format version
        read("Q")  # tensors
        for _ in range(read("Q")):
            name, kind = string(), read("I")
            found = value(kind)
            if name == key:
                return found
    return None


def read(path: Path) -> tuple[Any, Any]:
    """The GGUF as transformers reads it: (float32 model in eval mode, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with gguf_loading():
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    return model.eval(), tokenizer


def check(model: Any, tokenizer: Any, back: Any, back_tokenizer: Any, prompts: list[str],
          quant: str) -> float:
    """The largest relative RMS error of the logits over ``prompts``; raises when the
    tokenizers disagree or the error is over the quantization's tolerance."""
    import torch

    worst = 0.0
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        again = back_tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if ids != again:
            raise ConversionError(f"the GGUF's tokenizer encodes {prompt[:40]!r} differently "
                                  "from the model's; nothing was written")
        with torch.no_grad():
            tensor = torch.tensor([ids])
            a, b = model(tensor).logits, back(tensor).logits
        worst = max(worst, float((a - b).pow(2).mean().sqrt() / a.std()))
    if worst > TOLERANCE[quant]:
        raise ConversionError(f"{quant} GGUF: the logits differ from the model's by "
                              f"{worst:.3f} (relative RMS), over the tolerance of "
                              f"{TOLERANCE[quant]}; nothing was written")
    return worst


def held_out_prompts(data: TextData, count: int = 4) -> list[str]:
    """The first ``count`` held-out records as prompts (:func:`prompts_of`)."""
    return prompts_of([data.val[i] for i in range(min(count, len(data.val)))])


def prompts_of(rows: list[dict[str, Any]]) -> list[str]:
    """Records' texts, cut to 64 words (the check is per token; long ones add nothing)."""
    texts = [str(row.get("text") or " ".join(str(m.get("content") or "")
                                             for m in row.get("messages") or []))
             for row in rows]
    prompts = [" ".join(t.split()[:64]) for t in texts if t.strip()]
    return prompts or ["zero2one exports language models to GGUF."]


def modelfile(tokenizer: Any) -> str:
    """An Ollama Modelfile for the file beside it: ChatML models get their template and stop
    token spelled out; otherwise Ollama reads the chat template from the GGUF."""
    lines = [f"FROM ./{GGUF_FILE}", ""]
    template = getattr(tokenizer, "chat_template", None) or ""
    if "<|im_start|>" in template:
        lines += ['TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}',
                  "{{ .Content }}<|im_end|>",
                  '{{ end }}<|im_start|>assistant', '"""',
                  'PARAMETER stop "<|im_end|>"']
    lines += ["PARAMETER temperature 0.7", ""]
    return "\n".join(lines)
