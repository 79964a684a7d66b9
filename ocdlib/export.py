"""Export a run's deployed student (backbone + the kept head) to ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .engine.run_dir import load_run_model


class StudentGraph(torch.nn.Module):
    """The student's raw head output for an image batch (no flip test, no decoding)."""

    def __init__(self, model, head: str):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x):
        return self.model(x)[self.head]


def export_onnx(run: Path, out: Path, check: bool = True, atol: float = 1e-4) -> Path:
    student, cfg = load_run_model(run, student=True)
    graph = StudentGraph(student, cfg.model.deploy_head).eval()
    x = write_onnx(graph, cfg.data.input_size, cfg.model.deploy_head, out)
    print(f"exported {cfg.model.deploy_head} student of {run} to {out}")
    if check:
        max_err = compare_onnx(graph, out, x)
        if max_err > atol:
            raise RuntimeError(f"ONNX output differs from PyTorch by {max_err:.2e} > {atol}")
        print(f"onnxruntime matches PyTorch: max abs difference {max_err:.2e}")
    return out


def write_onnx(graph: torch.nn.Module, input_size, head: str, out: Path) -> torch.Tensor:
    """Write `graph` (a `StudentGraph`) to `out` with a dynamic batch axis; returns the
    example batch it was traced with. `input_size` is (W, H)."""
    w, h = input_size
    x = torch.randn(2, 3, h, w)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        graph,
        (x,),
        str(out),
        input_names=["image"],
        output_names=[head],
        dynamic_axes={"image": {0: "batch"}, head: {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return x


def compare_onnx(graph: torch.nn.Module, path: Path, x: torch.Tensor) -> float:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError(
            "onnxruntime is needed to check the export: pip install -e '.[export]' "
            "(or pass --no-check)"
        ) from e
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"image": x.numpy()})
    with torch.no_grad():
        want = graph(x).numpy()
    return float(np.abs(got - want).max())
