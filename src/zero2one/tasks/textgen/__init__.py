"""Text generation with causal language models (transformers): loading (Hugging Face
directories, GGUF files, the built-in SmolLM2), streaming and batched generation, the
``text-generation`` task that fine-tunes them (LoRA via peft, or every weight), its
OpenAI-compatible serving engine and the ``zero2one generate`` command.

The task and the command are declared in zero2one's entry points; importing this package imports
nothing heavy.
"""
