"""Text generation with causal language models (transformers): loading (Hugging Face
directories, GGUF files, the built-in SmolLM2), streaming and batched generation, and the
``text-generation`` task that fine-tunes them (LoRA via peft, or every weight)."""

from zero2one.errors import require

require("torch", "text")
require("transformers", "text")

from zero2one.registry import register_task  # noqa: E402
from zero2one.tasks.textgen.task import TextGeneration  # noqa: E402

register_task(TextGeneration)

__all__ = ["TextGeneration"]
