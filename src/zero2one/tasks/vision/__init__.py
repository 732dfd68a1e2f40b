"""Image classification with PyTorch (the vision extra: torch, pillow, safetensors).

The task is declared in zero2one's entry points (``zero2one.tasks``); importing this package
imports nothing heavy.
"""
