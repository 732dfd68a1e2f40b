"""A vision-language model as an MLflow model: ``image`` (encoded bytes; base64 in MLflow's
JSON) and ``question`` columns in, an ``answer`` column out; ``max_new_tokens`` an MLflow
param."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zero2one.errors import SchemaError
from zero2one.task import MLflowModel, PyfuncSchema
from zero2one.tasks.vision.flavor import blank_png, image_bytes

if TYPE_CHECKING:
    import pandas as pd

MAX_NEW_TOKENS = 16


class VisionLanguageFlavor(MLflowModel):
    """The MLflow capability of :class:`~zero2one.tasks.vlm.task.VisionLanguage`."""

    def pyfunc_schema(self) -> PyfuncSchema:
        return PyfuncSchema(inputs=[("image", "binary"), ("question", "string")],
                            outputs=[("answer", "string")],
                            example={"image": [blank_png(32, 3)],
                                     "question": ["What is in the picture?"]},
                            params={"max_new_tokens": MAX_NEW_TOKENS})

    def pyfunc_predict(self, frame: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
        import pandas as pd

        if "question" not in frame.columns:
            raise SchemaError("the input needs a `question` column beside `image`")
        rows = [{"image": image, "question": str(question)} for image, question in
                zip(image_bytes(frame), frame["question"].tolist(), strict=True)]
        answers = self.predict(  # type: ignore[attr-defined]
            rows, max_new_tokens=int(params.get("max_new_tokens", MAX_NEW_TOKENS)))
        return pd.DataFrame({"answer": answers})
