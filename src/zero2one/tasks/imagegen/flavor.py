"""An image generator as an MLflow model: a ``prompt`` column in (``negative_prompt`` too, where
given), an ``image`` column (base64 PNG) and the ``seed`` of each out; ``seed`` an MLflow
param (the recipe's by default: the same prompt draws the same image)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zero2one.task import MLflowModel, PyfuncSchema

if TYPE_CHECKING:
    import pandas as pd


class ImageFlavor(MLflowModel):
    """The MLflow capability of :class:`~zero2one.tasks.imagegen.task.ImageGeneration`."""

    def pyfunc_schema(self) -> PyfuncSchema:
        # a prompt the model was trained on (a pretrained pipeline has none of its own)
        prompts = getattr(self, "prompts_", None) or ["a photo of a cat"]
        return PyfuncSchema(inputs=[("prompt", "string")],
                            outputs=[("image", "string"), ("seed", "long")],
                            example={"prompt": [str(prompts[0])]},
                            params={"seed": int(self.config.seed)})

    def pyfunc_predict(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        seed = params.get("seed")
        done = self.predict(frame, seed=None if seed is None else int(seed))  # type: ignore
        return done[["image", "seed"]]  # type: ignore[no-any-return]
