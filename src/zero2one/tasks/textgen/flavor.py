"""A language model as an MLflow model: a ``prompt`` column in, a ``completion`` column out
(greedy, through the chat template where the model has one, as ``zero2one predict`` does);
``max_new_tokens`` an MLflow param."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zero2one.task import MLflowModel, PyfuncSchema

if TYPE_CHECKING:
    import pandas as pd

MAX_NEW_TOKENS = 64


class TextFlavor(MLflowModel):
    """The MLflow capability of :class:`~zero2one.tasks.textgen.task.TextGeneration`."""

    def pyfunc_schema(self) -> PyfuncSchema:
        return PyfuncSchema(inputs=[("prompt", "string")], outputs=[("completion", "string")],
                            example={"prompt": ["What is machine learning?"]},
                            params={"max_new_tokens": MAX_NEW_TOKENS})

    def pyfunc_predict(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        done = self.predict(  # type: ignore[attr-defined]
            frame, max_new_tokens=int(params.get("max_new_tokens", MAX_NEW_TOKENS)))
        return done[["completion"]]  # type: ignore[no-any-return]
