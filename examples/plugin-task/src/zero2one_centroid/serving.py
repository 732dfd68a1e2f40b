"""HTTP for nearest-centroid models: rows through zero2one's ``/predict`` (parse, micro-batch,
answer), and a route of the task's own, ``GET /v1/centroids``."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from zero2one.serving.adapter import BaseAdapter
from zero2one.serving.errors import JSON, APIError, read_body
from zero2one.serving.security import Guarded
from zero2one_centroid.task import NearestCentroid, Rows

router = APIRouter(tags=["centroids"], dependencies=Guarded)


@router.get("/v1/centroids", summary="The class centroids of the served model")
async def centroids(request: Request) -> JSON:
    model = request.app.state.holder.current.adapter.model
    return JSON({"features": model.features_,
                 "centroids": dict(zip(model.classes_, model.centroids_.tolist(), strict=True))})


class CentroidAdapter(BaseAdapter):
    def __init__(self, model: NearestCentroid) -> None:
        self.model = model

    def schema(self) -> dict[str, Any]:
        return {"features": self.model.features_}

    async def parse(self, request: Request) -> tuple[list[list[float]], dict[str, Any]]:
        body = await read_body(request, Rows)  # zero2one's JSON parsing and 4xx messages
        width = len(self.model.features_)
        for i, row in enumerate(body.rows):
            if len(row) != width:
                raise APIError(422, "invalid_input", f"row {i}: expected {width} values "
                               f"({', '.join(self.model.features_)}), got {len(row)}")
        return body.rows, {}

    def predict(self, rows: list[list[float]]) -> list[str]:
        return self.model._nearest(np.asarray(rows, dtype=float))

    def response(self, results: list[str], options: dict[str, Any]) -> dict[str, Any]:
        return {"result": results}
