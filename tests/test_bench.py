"""`python -m ocdlib bench` runs and writes well-formed perf.json and perf.md (no timing is
judged here: the figures of a test machine mean nothing)."""

from __future__ import annotations

import json

from ocdlib.__main__ import main
from ocdlib.bench.timing import Spread, interleaved, ratio_to

SECTION_TITLES = ("1. Model cost", "2. Training cost", "3. Data pipeline", "4. Evaluation")


def test_interleaved_rounds_rotate_and_ratios_pair_rounds():
    calls = []
    times = interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3, warmup=1
    )
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    r = ratio_to({"x": [2.0, 4.0, 6.0], "base": [1.0, 2.0, 3.0]}, "x", "base")
    assert r.median == r.min == r.max == 2.0
    s = Spread.of([1.0, 2.0, 3.0, 10.0])
    assert s.median == 2.5 and s.min == 1.0 and s.max == 10.0 and s.q1 <= s.median <= s.q3


def test_bench_writes_perf_json_and_md(tmp_path, capsys):
    assert main(["bench", "--plan", "tiny", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "perf.json").read_text())
    for key in ("date", "command", "git_commit", "seed", "mode", "device", "threads", "torch"):
        assert key in report, key
    assert report["mode"] == "tiny" and report["device"] == "cpu" and report["wall_s"] > 0
    assert report["command"].startswith("python -m ocdlib bench")
    assert {"cpu", "cores", "torch_threads", "onnxruntime"} <= set(report["machine"])
    assert list(report["sections"]) == ["model", "training", "data", "eval"]
    for section, title in zip(report["sections"].values(), SECTION_TITLES, strict=True):
        assert section["title"] == title
        assert {"tables", "data", "targets", "notes", "wall_s"} <= set(section)
        for table in section["tables"]:
            assert all(len(row) == len(table["columns"]) for row in table["rows"])
    # Every target has a verdict computed from a figure, and a sentence that says it.
    assert report["targets"]
    for target in report["targets"]:
        assert isinstance(target["met"], bool)
        assert target["sentence"].endswith(("met.", "not met.", "outputs)."))
    models = report["sections"]["model"]["data"]
    assert models["same_architecture"]["r50"]["identical"]
    assert models["same_architecture"]["cpu"]["identical"]
    assert "torch_ms_b1" in models["models"][0] and "torch_ratio_b1" in models["models"][0]
    training = report["sections"]["training"]["data"]["groups"]
    assert [g["profile"] for g in training] == ["coco_r50", "cpu"]
    assert {"DeepPose", "OCD-DeepPose", "TCD-DeepPose", "SimpleBaseline"} <= set(
        training[0]["ratio_to_deeppose"]
    )
    data = report["sections"]["data"]["data"]["datasets"]
    assert any(d["crop"] == "256x192" for d in data.values())
    for d in data.values():
        assert {"off", "on"} == set(d["images_per_s_one_core"])
    seconds = report["sections"]["eval"]["data"]["seconds"]
    assert {"loadRes", "evaluate", "accumulate", "summarize", "total"} == set(seconds)

    md = (tmp_path / "perf.md").read_text()
    for title in SECTION_TITLES:
        assert f"## {title}" in md
    for target in report["targets"]:
        assert target["sentence"] in md
    assert "wrote" in capsys.readouterr().out
