"""Conversions of a language model: a GGUF file for llama.cpp and Ollama (``export``), int8
weights (``compress``), and what the conversion report times."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

from zero2one.errors import ConversionError
from zero2one.progress import Reporter
from zero2one.task import Convertible
from zero2one.tasks.textgen.gguf_export import DEFAULT_QUANT, export_gguf

if TYPE_CHECKING:
    from zero2one.tasks.textgen.task import TextGeneration


class TextConversion(Convertible):
    """The conversion capability of :class:`~zero2one.tasks.textgen.task.TextGeneration`."""

    model_: Any
    # the decoding step the compression report times: None, transformers' forward; else
    # zero2one's lean step with weights in this precision
    runtime_: str | None = None
    precision_: str | None = None  # "int8": the weights are stored and computed as int8
    gguf_: Path | None = None  # an exported GGUF file, saved as the model
    quant_: str | None = None  # its quantization

    @property
    def runtime(self) -> str:
        if self.quant_ is not None:
            return f"GGUF {self.quant_} (read by transformers)"
        if self.runtime_ is None:
            return "transformers float32"
        return f"zero2one step {self.runtime_}"

    def derived(self, model: Any, *, runtime: str | None) -> Self:
        """A copy of this model computing with ``model`` (int8-rounded weights, ...) and timed
        with zero2one's decoding step at ``runtime``."""
        new = copy.copy(self)
        new.model_, new.runtime_, new.ref, new.manifest = model, runtime, None, {}
        new.precision_ = "int8" if runtime == "int8" else self.precision_
        new.__dict__.pop("scores_", None)  # evaluate() measures the new weights
        return new

    def export(self, fmt: str, data: Any, *, reporter: Reporter,
               accept_loss: bool = False) -> Any:
        if self.gguf_ is not None or self.precision_ == "int8":
            raise ConversionError("export the model this one was made from (its weights are "
                                  "quantized already)")
        _, _, quant = fmt.partition("-")
        return export_gguf(cast("TextGeneration", self), data, quant or DEFAULT_QUANT,
                           reporter=reporter, accept_loss=accept_loss)

    def compress(self, method: str, data: Any, *, options: Any,
                 reporter: Reporter) -> Any:
        from zero2one.tasks.textgen.compress import int8_weights  # torch

        if self.precision_ == "int8":
            raise ConversionError("this model's weights are int8 already; compress the model "
                                  "it was made from")
        return int8_weights(cast("TextGeneration", self), data, options=options, reporter=reporter)

    def bench_call(self, data: Any, batch_size: int) -> Any:
        from zero2one.tasks.textgen.compress import bench_call  # torch

        return bench_call(cast("TextGeneration", self), data, batch_size)
