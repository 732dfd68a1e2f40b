"""Image classification with PyTorch (needs the vision extra: torch, pillow, safetensors)."""

from zero2one.errors import require

require("torch", "vision")
require("safetensors", "vision")

from zero2one.registry import register_task  # noqa: E402
from zero2one.tasks.vision.task import ImageClassification  # noqa: E402

register_task(ImageClassification)

__all__ = ["ImageClassification"]
