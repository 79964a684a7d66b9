"""Section 1: what each deployed model costs (parameters, MACs, inference latency).

The graph timed is the student as `ocdlib.export` exports it: backbone and the
deployed head only, eval mode, no autograd, fp32, raw head output (no flip
test, no decoding). The same graph, exported to ONNX, is timed in ONNX Runtime
(CPU only). Latency is compared with SimpleBaseline-R50 at 256x192 from the
same rounds.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..configs import build_config
from ..export import StudentGraph, write_onnx
from ..metainfo import get_dataset_info
from ..models import build_model, count_macs, count_params, export_student
from .timing import SEED, Spread, interleaved, ratio_to, synchronizer

BASELINE = "SimpleBaseline-R50"
OCD_R50 = "OCD-DeepPose-R50, deployed"
DEEPPOSE_R50 = "DeepPose-R50"
LATENCY_TARGET = 0.75  # deployed OCD student / heatmap model, CPU latency at 256x192


@dataclass(frozen=True)
class ModelRow:
    label: str
    preset: str
    overrides: dict = field(default_factory=dict)


def model_rows(which: str = "all") -> list[ModelRow]:
    """The models of the table: ResNet-50 at 256x192 (the paper's), then the cpu profile's.

    `which`: "all"; "some" (one reduced head, three cpu-profile models); "few" (only what
    the targets need)."""
    rows = [
        ModelRow(BASELINE, "coco_r50_simplebaseline"),
        ModelRow(DEEPPOSE_R50, "coco_r50_deeppose"),
    ]
    if which != "few":
        rows.append(ModelRow("RLE-R50", "coco_r50_rle"))
    rows.append(ModelRow(OCD_R50, "coco_r50_ocd"))
    reduced = {"all": [(n, c) for n in (0, 1, 2) for c in (64, 128)], "some": [(1, 128)]}
    rows += [
        ModelRow(
            f"Reduced head N={n} C={c}, R50, deployed",
            "coco_r50_reduced",
            {"model.small_deconv_layers": n, "model.small_deconv_channels": c},
        )
        for n, c in reduced.get(which, [])
    ]
    rows.append(ModelRow("cpu: DeepPose", "cpu_deeppose"))
    if which != "few":
        rows.append(ModelRow("cpu: SimpleBaseline", "cpu_simplebaseline"))
    rows.append(ModelRow("cpu: OCD-DeepPose, deployed", "cpu_ocd"))
    if which == "all":
        rows += [
            ModelRow("cpu: RLE", "cpu_rle"),
            ModelRow("cpu: reduced head, deployed", "cpu_reduced"),
        ]
    return rows


def build_student(row: ModelRow, extra: dict | None = None):
    """The deployed student graph of a row (random weights: cost does not depend on them)."""
    cfg = build_config(row.preset, {**row.overrides, "model.pretrained": "none", **(extra or {})})
    info = get_dataset_info(cfg.data.dataset)
    torch.manual_seed(SEED)
    model = build_model(cfg.model, info.num_keypoints, cfg.data.input_size, cfg.data.heatmap_size)
    student = export_student(model, cfg.model.deploy_head)
    return StudentGraph(student, cfg.model.deploy_head).eval(), cfg


def same_architecture(ocd: StudentGraph, deeppose: StudentGraph, input_size) -> dict:
    """Whether the OCD student is DeepPose's graph: the same parameters (names, shapes,
    count), and the same output bit for bit once DeepPose's weights are loaded into it."""
    a, b = ocd.model.state_dict(), deeppose.model.state_dict()
    same_keys = list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    w, h = input_size
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(SEED + 1))
    loaded = copy.deepcopy(ocd).cpu()
    loaded.model.load_state_dict({k: v.cpu() for k, v in deeppose.model.state_dict().items()})
    ref = copy.deepcopy(deeppose).cpu()
    with torch.no_grad():
        y_ocd, y_dp = loaded(x), ref(x)
    out = {
        "params_ocd": count_params(ocd.model),
        "params_deeppose": count_params(deeppose.model),
        "same_parameter_names_and_shapes": same_keys,
        "output_shape_ocd": list(y_ocd.shape),
        "output_shape_deeppose": list(y_dp.shape),
        "max_abs_output_difference": float((y_ocd - y_dp).abs().max()),
    }
    out["identical"] = bool(
        same_keys
        and out["params_ocd"] == out["params_deeppose"]
        and out["output_shape_ocd"] == out["output_shape_deeppose"]
        and torch.equal(y_ocd, y_dp)
    )
    return out


def _ort_session(graph: StudentGraph, cfg, path: Path):
    import onnxruntime as ort

    with warnings.catch_warnings():  # the tracer's notes on shape checks inside the heads
        warnings.simplefilter("ignore")
        write_onnx(graph.cpu(), cfg.data.input_size, cfg.model.deploy_head, path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnxruntime_status(device: torch.device) -> str | None:
    """None when ONNX Runtime can be timed here, else why not (a table cell)."""
    if device.type != "cpu":
        return "skipped on cuda (ONNX Runtime timed on the CPU only)"
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "not installed"
    return None


def measure(
    rows: list[ModelRow],
    batches: tuple[int, ...],
    rounds: tuple[int, ...],
    device: torch.device,
    extra_overrides: dict | None = None,
) -> dict:
    sync = synchronizer(device)
    ort_missing = onnxruntime_status(device)
    graphs, cfgs, info = {}, {}, {}
    for row in rows:
        graph, cfg = build_student(row, extra_overrides)
        w, h = cfg.data.input_size
        graphs[row.label], cfgs[row.label] = graph, cfg
        info[row.label] = {
            "preset": row.preset,
            "overrides": row.overrides,
            "input": f"{h}x{w}",
            "params": count_params(graph.model),
            "macs": count_macs(graph.model, (w, h)),
        }
    check_r50 = same_architecture(
        graphs[OCD_R50], graphs[DEEPPOSE_R50], cfgs[OCD_R50].data.input_size
    )
    check_cpu = None
    if "cpu: OCD-DeepPose, deployed" in graphs:
        check_cpu = same_architecture(
            graphs["cpu: OCD-DeepPose, deployed"],
            graphs["cpu: DeepPose"],
            cfgs["cpu: DeepPose"].data.input_size,
        )

    sessions, onnx_diff = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        if ort_missing is None:
            for i, (label, graph) in enumerate(graphs.items()):
                sessions[label] = _ort_session(graph, cfgs[label], Path(tmp) / f"{i}.onnx")
        for label in graphs:
            graphs[label] = graphs[label].to(device)

        latency: dict[tuple[str, str, int], Spread] = {}
        ratios: dict[tuple[str, str, int], Spread] = {}
        for b, b_rounds in zip(batches, rounds, strict=True):
            variants = {}
            for label, graph in graphs.items():
                w, h = cfgs[label].data.input_size
                x = torch.randn(b, 3, h, w, device=device)

                def run_torch(graph=graph, x=x):
                    with torch.no_grad():
                        graph(x)

                variants[f"torch|{label}"] = run_torch
                if label in sessions:
                    x_np = x.cpu().numpy()
                    sess = sessions[label]
                    variants[f"ort|{label}"] = lambda sess=sess, x_np=x_np: sess.run(
                        None, {"image": x_np}
                    )
                    if b == batches[0]:
                        (got,) = sess.run(None, {"image": x_np})
                        with torch.no_grad():
                            want = graph(x).cpu().numpy()
                        onnx_diff[label] = float(np.abs(got - want).max())
            # Small batches are timed over a few calls a round, so that one call's jitter
            # does not decide the figure.
            times = interleaved(variants, b_rounds, repeat=max(1, 4 // b), warmup=1, sync=sync)
            for key in variants:
                engine, label = key.split("|", 1)
                latency[(engine, label, b)] = Spread.of(times[key]).scaled(1000)
                ratios[(engine, label, b)] = ratio_to(times, key, f"{engine}|{BASELINE}")

    return _section(
        rows, batches, info, latency, ratios, ort_missing, onnx_diff, check_r50, check_cpu, device
    )


def _cell(d: dict, key) -> str:
    return d[key].text("{:.1f}") if key in d else "-"


def _ratio_cell(d: dict, key) -> str:
    return d[key].text("{:.2f}", "x") if key in d else "-"


def _section(
    rows, batches, info, latency, ratios, ort_missing, onnx_diff, check_r50, check_cpu, device
):
    columns = ["model", "input (HxW)", "params (M)", "GMACs"]
    for b in batches:
        columns += [f"PyTorch ms, batch {b}", "x SimpleBaseline-R50"]
    for b in batches:
        columns += [f"ONNX Runtime ms, batch {b}", "x SimpleBaseline-R50"]
    table, data = [], []
    for row in rows:
        i = info[row.label]
        cells = [row.label, i["input"], f"{i['params'] / 1e6:.2f}", f"{i['macs'] / 1e9:.2f}"]
        entry = {"model": row.label, **i}
        for b in batches:
            key = ("torch", row.label, b)
            cells += [_cell(latency, key), _ratio_cell(ratios, key)]
            entry[f"torch_ms_b{b}"] = latency[key].as_dict()
            entry[f"torch_ratio_b{b}"] = ratios[key].as_dict()
        for b in batches:
            key = ("ort", row.label, b)
            if ort_missing:
                cells += [ort_missing, "-"]
            else:
                cells += [_cell(latency, key), _ratio_cell(ratios, key)]
                entry[f"ort_ms_b{b}"] = latency[key].as_dict()
                entry[f"ort_ratio_b{b}"] = ratios[key].as_dict()
        if row.label in onnx_diff:
            entry["onnx_max_abs_difference"] = onnx_diff[row.label]
        table.append(cells)
        data.append(entry)

    targets = []
    engines = [("torch", "PyTorch")] + ([] if ort_missing else [("ort", "ONNX Runtime")])
    for engine, engine_name in engines:
        for b in batches:
            r = ratios[(engine, OCD_R50, b)]
            met = r.median <= LATENCY_TARGET
            targets.append(
                {
                    "target": f"deployed OCD student <= {LATENCY_TARGET}x the heatmap model's "
                    f"latency at 256x192 (batch {b}, {engine_name}, {device.type})",
                    "met": met,
                    "measured": r.median,
                    "sentence": f"Deployed OCD-DeepPose-R50 against SimpleBaseline-R50 at "
                    f"256x192, batch {b}, {engine_name} on {device.type}: {r.median:.2f}x "
                    f"(IQR {r.q1:.2f}-{r.q3:.2f}) against a target of <= {LATENCY_TARGET}x: "
                    f"{'met' if met else 'not met'}.",
                }
            )
    for name, check in (("R50 256x192", check_r50), ("cpu profile", check_cpu)):
        if check is None:
            continue
        met = check["identical"]
        targets.append(
            {
                "target": f"OCD deployed student identical in architecture to DeepPose ({name})",
                "met": met,
                "measured": check,
                "sentence": f"OCD's deployed student and plain DeepPose ({name}): "
                f"{check['params_ocd']:,} and {check['params_deeppose']:,} parameters, "
                f"{'the same' if check['same_parameter_names_and_shapes'] else 'different'} "
                f"parameter names and shapes, outputs {check['output_shape_ocd']} and "
                f"{check['output_shape_deeppose']}, largest output difference with DeepPose's "
                f"weights loaded {check['max_abs_output_difference']:.1e}: "
                f"{'met (identical AP-relevant outputs)' if met else 'not met'}.",
            }
        )
    notes = [
        "Latency: the exported student graph (backbone + deployed head), eval mode, no_grad, "
        "fp32, random weights; median over interleaved rounds (interquartile range in "
        "brackets); ratio: per-round ratio to SimpleBaseline-R50 at 256x192, same engine.",
        "GMACs: multiply-accumulates of one image from torch.utils.flop_counter "
        "(ocdlib.models.complexity).",
    ]
    if onnx_diff:
        worst = max(onnx_diff.values())
        notes.append(
            f"ONNX Runtime output against PyTorch: largest absolute difference {worst:.1e}."
        )
    return {
        "title": "1. Model cost",
        "tables": [{"caption": "Deployed models", "columns": columns, "rows": table}],
        "data": {"models": data, "same_architecture": {"r50": check_r50, "cpu": check_cpu}},
        "targets": targets,
        "notes": notes,
    }
