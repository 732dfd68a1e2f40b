"""ONNX models inside zero2one model directories, run by ONNX Runtime.

Tasks that export or quantize to ONNX keep an :class:`OnnxModel`: the ``.onnx`` file (and the
``.onnx.data`` file of external weights that ``torch.onnx.export`` writes) plus one ONNX Runtime
session over them. The files travel into the model directory unchanged, so the manifest's sha256
covers every byte the session reads (an altered file is refused before a session is made).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from zero2one.errors import ArtifactError
from zero2one.machine import usable_cores


def threads() -> int:
    """Intra-op threads: torch's count when torch is loaded (the same threads as the model
    it is compared with), else the CPUs this process may use."""
    import sys

    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    return usable_cores()


def session(path: Path, *, intra_threads: int | None = None) -> Any:
    """An ONNX Runtime session on ``path`` (CUDA first where ONNX Runtime has it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_threads or threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings about unused initializers are not the user's
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ONNX Runtime raises its own types for invalid graphs
        raise ArtifactError(f"{path}: ONNX Runtime cannot load it "
                            f"({str(exc).strip().splitlines()[0][:300]})") from None


def strip_metadata(path: Path) -> None:
    """Drop the exporter's per-node metadata (source stack traces) and doc strings, in place:
    they are a tenth of a small model's file and nothing reads them at run time."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del model.metadata_props[:]
    model.doc_string = ""
    onnx.save(model, str(path))


class OnnxModel:
    """An ONNX model's files (kept in a private directory until saved) and a session on them."""

    def __init__(self, directory: Path, main: str, *, owned: bool = False) -> None:
        self.directory, self.main = Path(directory), main
        self._owned = owned  # a temporary directory this object removes when it goes away
        self.session = session(self.directory / main)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    @classmethod
    def adopt(cls, path: Path) -> OnnxModel:
        """Take ``path`` (and its external-data files) into a private directory."""
        private = Path(tempfile.mkdtemp(prefix="zero2one-onnx-"))
        for file in companions(path):
            shutil.copy2(file, private / file.name)
        return cls(private, path.name, owned=True)

    def files(self) -> list[Path]:
        return companions(self.directory / self.main)

    @property
    def nbytes(self) -> int:
        return sum(f.stat().st_size for f in self.files())

    def run(self, feeds: dict[str, Any], outputs: list[str] | None = None) -> list[Any]:
        return list(self.session.run(outputs, feeds))

    def save(self, target: Path) -> list[str]:
        """Copy the files into ``target``; returns their names."""
        names = []
        for file in self.files():
            shutil.copy2(file, target / file.name)
            names.append(file.name)
        return names

    def __del__(self) -> None:
        if getattr(self, "_owned", False):
            shutil.rmtree(self.directory, ignore_errors=True)


def companions(path: Path) -> list[Path]:
    """``path`` and the external-data files beside it that it names (``model.onnx.data``)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    model = onnx.load(str(path), load_external_data=False)
    found = [path]
    for tensor in _get_all_tensors(model):
        if uses_external_data(tensor):
            location = path.parent / ExternalDataInfo(tensor).location
            if not location.resolve().is_relative_to(path.parent.resolve()):
                raise ArtifactError(f"{path}: external data outside the model's directory")
            if location not in found:
                found.append(location)
    return found
