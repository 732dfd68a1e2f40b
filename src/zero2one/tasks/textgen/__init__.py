"""Text generation with causal language models (transformers): loading (Hugging Face
directories, GGUF files, the built-in SmolLM2) and streaming generation. Fine-tuning (LoRA)
and the OpenAI-compatible routes build on these modules."""
