"""Reporting: frames, seed statistics, the markdown writer, claims, figures, one real smoke run."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from ocdlib.data.stats import annotation_stats, stats_frame
from ocdlib.grid import judge as claims_mod
from ocdlib.grid.catalogue import by_label
from ocdlib.grid.claims import FLOORS, comparisons_among
from ocdlib.grid.gather import config_for, gather
from ocdlib.profiles import NOTEBOOK_PROFILES as PROFILES
from ocdlib.report import figures, pictures
from ocdlib.report import tables as reporting


def _result(label: str, seed: int, ap: float, **extra) -> dict:
    """A result dict as run_experiment returns it, with made-up numbers."""
    exp = by_label(label)
    cfg = config_for(exp, PROFILES["smoke"], seed) if not exp.teacher else _no_teacher(exp, seed)
    metrics = {"AP": ap, "AP50": ap + 0.1, "AP75": ap - 0.1, "AR": ap + 0.05}
    metrics.update(extra.pop("metrics", {}))
    return {
        "experiment": exp,
        "config": cfg,
        "metrics": metrics,
        "student_params": extra.pop("params", 1000),
        "student_macs": 2_000_000_000,
        "train_time_s": 120.0,
        "train_images_per_s": 50.0,
        "config_hash": cfg.hash,
        "seed": seed,
        "git_commit": "abc1234",
        "run_dir": f"/runs/{cfg.name}-{cfg.hash}-s{seed}",
        **extra,
    }


def _no_teacher(exp, seed):
    # config_for would look up the teacher's run directory; a plain preset suffices here.
    from ocdlib.configs import build_config

    return build_config(f"smoke_{exp.method}", {"train.seed": seed})


def test_results_frame_one_row_per_run_in_paper_units():
    results = [_result("DeepPose", 0, 0.40), _result("DeepPose", 1, 0.44)]
    df = reporting.results_frame(results)
    assert list(df["label"]) == ["DeepPose", "DeepPose"]
    assert list(df["seed"]) == [0, 1]
    assert df["AP"].tolist() == pytest.approx([40.0, 44.0])
    assert df["AR"].tolist() == pytest.approx([45.0, 49.0])
    row = df.iloc[0]
    assert (row["notebook"], row["group"], row["method"]) == ("01", "baseline", "deeppose")
    assert (row["dataset"], row["backbone"], row["head"]) == ("body", "resnet18", "regression")
    assert row["GMACs"] == pytest.approx(2.0)
    assert row["train_time_min"] == pytest.approx(2.0)
    assert row["params"] == 1000
    assert "face/AP" not in df.columns  # part APs only for whole-body rows


def test_results_frame_wholebody_parts_and_undefined_metrics():
    parts = {"body/AP": 0.5, "foot/AP": 0.2, "face/AP": -1.0, "hand/AP": 0.1, "wholebody/AP": 0.3}
    df = reporting.results_frame(
        [_result("DeepPose (whole-body)", 0, 0.3, metrics=parts), _result("DeepPose", 0, 0.4)]
    )
    wb = df.iloc[0]
    assert wb["dataset"] == "wholebody"
    assert wb["foot/AP"] == pytest.approx(20.0)
    assert math.isnan(wb["face/AP"])  # pycocotools' -1 means undefined, not -100 AP
    assert math.isnan(df.iloc[1]["body/AP"])


def test_head_description_names_reduced_head_size():
    assert reporting.head_description(
        config_for(by_label("Reduced head N=0 alone"), PROFILES["smoke"], 0)
    ) == ("heatmap (reduced) N=0")
    cfg = config_for(by_label("SimpleBaseline (heatmap)"), PROFILES["smoke"], 0)
    assert reporting.head_description(cfg) == "heatmap N=3 C=64"


def test_summary_frame_mean_and_sample_std_over_seeds():
    results = [_result("DeepPose", s, ap) for s, ap in ((0, 0.40), (1, 0.44), (2, 0.48))]
    results.append(_result("OCD-DeepPose", 0, 0.50))
    summary = reporting.summary_frame(reporting.results_frame(results))
    assert list(summary["label"]) == ["DeepPose", "OCD-DeepPose"]
    dp = summary.iloc[0]
    assert dp["AP"] == pytest.approx(44.0)
    assert dp["AP_std"] == pytest.approx(4.0)  # sample std of 40, 44, 48
    assert dp["n_seeds"] == 3 and dp["seeds"] == "0,1,2"
    assert len(dp["config_hashes"].split(",")) == 3  # the seed is part of the config
    ocd = summary.iloc[1]
    assert ocd["n_seeds"] == 1 and math.isnan(ocd["AP_std"])
    # The table leaves a one-seed std empty rather than printing "nan".
    table = reporting.markdown_table(summary[["label", "AP", "AP_std"]])
    assert table.splitlines()[-1] == "| OCD-DeepPose | 50.0 |  |"


def test_markdown_table_layout_alignment_and_escaping():
    df = pd.DataFrame(
        {
            "name": ["a|b", "c"],
            "AP": [12.345, math.nan],
            "params": [11193954, 5],
            "ok": [True, False],
        }
    )
    assert reporting.markdown_table(df).splitlines() == [
        "| name | AP | params | ok |",
        "|---|---:|---:|---|",
        "| a\\|b | 12.3 | 11,193,954 | yes |",
        "| c |  | 5 | no |",
    ]
    assert (
        reporting.markdown_table(df, digits={"AP": 3})
        .splitlines()[2]
        .startswith("| a\\|b | 12.345 |")
    )
    # A tiny negative number prints as 0.0, not -0.0; a real one keeps its sign.
    signs = pd.DataFrame({"delta": [-0.004, -0.06]})
    assert reporting.markdown_table(signs).splitlines()[2:] == ["| 0.0 |", "| -0.1 |"]


def test_write_table_writes_md_csv_and_provenance(tmp_path):
    df = pd.DataFrame({"label": ["DeepPose"], "AP": [40.04]})
    md, csv = reporting.write_table(
        df, tmp_path / "tables" / "01_x", PROFILES["smoke"], "01_baselines", "T"
    )
    text = md.read_text()
    assert text.startswith("# T\n")
    assert "python -m ocdlib reproduce --profile smoke --only 01" in text
    assert "notebooks/01_baselines.ipynb" in text and "written by code" in text
    assert "git commit: " in text and "date: " in text
    assert text.rstrip().endswith("| DeepPose | 40.0 |")
    assert pd.read_csv(csv)["AP"].tolist() == [40.04]  # full precision in the CSV
    meta = json.loads((tmp_path / "tables" / "01_x.meta.json").read_text())
    assert meta["profile"] == "smoke" and meta["table"] == "01_x.csv"


def test_a_written_table_names_run_folders_from_the_repository(tmp_path):
    from ocdlib.paths import REPO_ROOT

    inside = REPO_ROOT / "runs" / "cpu_x-abc-s0"
    outside = tmp_path / "elsewhere" / "cpu_x-abc-s1"
    df = pd.DataFrame({"label": ["A", "B", "C"], "run_dir": [str(inside), str(outside), ""]})
    md, csv = reporting.write_table(df, tmp_path / "t", PROFILES["smoke"], "06_results")
    shown = pd.read_csv(csv, keep_default_na=False)["run_dir"].tolist()
    assert shown == ["runs/cpu_x-abc-s0", str(outside), ""]  # no folder stays none
    assert "| A | runs/cpu_x-abc-s0 |" in md.read_text()
    assert df["run_dir"].tolist() == [str(inside), str(outside), ""]  # the caller's frame kept


def _summary(rows):
    """A summary frame from (label, [AP per seed]) pairs."""
    results = [_result(label, seed, ap) for label, aps in rows for seed, ap in enumerate(aps)]
    return reporting.summary_frame(reporting.results_frame(results))


def _rows(summary):
    return [by_label(label) for label in summary["label"]]


def _claims(summary):
    """The comparisons between the rows of `summary` (as a notebook that gathered them)."""
    return comparisons_among(_rows(summary), PROFILES["smoke"])


def test_comparisons_margin_exceeds_twice_the_spread():
    summary = _summary([("DeepPose", [0.40, 0.42]), ("OCD-DeepPose", [0.50, 0.52])])
    comps = claims_mod.comparisons(summary, _claims(summary))
    assert list(comps["comparison"]) == ["OCD-DeepPose vs DeepPose"]
    row = comps.iloc[0]
    assert row["delta AP"] == pytest.approx(10.0)
    assert row["spread"] == pytest.approx(math.sqrt(2.0))  # std of (40, 42)
    assert row["margin > 2x spread"] == True  # noqa: E712 (numpy bool)
    sentence = claims_mod.comparison_sentence(row)
    assert sentence.startswith("OCD-DeepPose vs DeepPose: +10.0 AP (spread 1.4 over 2 seeds)")
    assert "exceeds twice the spread" in sentence


def test_comparisons_margin_within_twice_the_spread():
    summary = _summary([("DeepPose", [0.40, 0.46]), ("OCD-DeepPose", [0.45, 0.47])])
    row = claims_mod.comparisons(summary, _claims(summary)).iloc[0]
    assert row["delta AP"] == pytest.approx(3.0)
    assert row["spread"] == pytest.approx(math.sqrt(18.0))  # the larger std: (40, 46)
    assert row["margin > 2x spread"] == False  # noqa: E712
    assert "not separated" in claims_mod.comparison_sentence(row)


def test_comparisons_verdict_names_a_separated_loss_as_worse(tmp_path):
    """A separated margin against the candidate is a claim that fails: the verdict
    says "worse", never a bare "yes" beside the claim; read back from the CSV the
    tables write, it says the same."""
    summary = _summary([("DeepPose", [0.50, 0.52]), ("OCD-DeepPose", [0.40, 0.42])])
    comps = claims_mod.comparisons(summary, _claims(summary))
    assert list(comps["verdict"]) == ["worse"]
    assert "is worse" in claims_mod.comparison_sentence(comps.iloc[0])
    comps.to_csv(tmp_path / "c.csv", index=False)
    back = pd.read_csv(tmp_path / "c.csv").iloc[0]
    assert claims_mod.verdict(back["delta AP"], back["margin > 2x spread"]) == "worse"
    close = _summary([("DeepPose", [0.40, 0.46]), ("OCD-DeepPose", [0.45, 0.47])])
    assert list(claims_mod.comparisons(close, _claims(close))["verdict"]) == ["not separated"]
    better = _summary([("DeepPose", [0.40, 0.42]), ("OCD-DeepPose", [0.50, 0.52])])
    assert list(claims_mod.comparisons(better, _claims(better))["verdict"]) == ["better"]
    one = _summary([("DeepPose", [0.40]), ("OCD-DeepPose", [0.50])])
    assert list(claims_mod.comparisons(one, _claims(one))["verdict"]) == ["one seed"]
    single = claims_mod.comparisons(one, _claims(one))
    single.to_csv(tmp_path / "s.csv", index=False)
    back = pd.read_csv(tmp_path / "s.csv").iloc[0]
    assert claims_mod.verdict(back["delta AP"], back["margin > 2x spread"]) == "one seed"


def test_comparisons_one_seed_and_heatmap_sanity_check():
    summary = _summary(
        [("DeepPose", [0.40]), ("SimpleBaseline (heatmap)", [0.35]), ("RLE", [0.95])]
    )
    comps = claims_mod.comparisons(summary, _claims(summary))
    assert list(comps["comparison"]) == ["heatmap vs DeepPose (benchmark check)"]
    assert comps.iloc[0]["margin > 2x spread"] is None
    assert "one seed" in claims_mod.comparison_sentence(comps.iloc[0])
    checks = claims_mod.sanity_checks(summary, _claims(summary)).set_index("check")["passed"]
    assert checks["heatmap baseline better than DeepPose"] == False  # noqa: E712 (numpy bool)
    assert checks["no method above AP 90 (not saturated)"] == False  # noqa: E712
    fine = _summary([("DeepPose", [0.40]), ("SimpleBaseline (heatmap)", [0.5])])
    ok = claims_mod.sanity_checks(fine, _claims(fine))
    assert ok["passed"].all()


def test_target_checks_gain_spread_and_size():
    met = claims_mod.target_checks(
        _summary([("DeepPose", [0.40, 0.42]), ("OCD-DeepPose", [0.50, 0.52])])
    )
    assert met["passed"].tolist() == [True, True, True]
    assert met["value"].tolist()[:2] == ["+10.0 AP", "spread 1.4 over 2 seeds"]
    short = claims_mod.target_checks(
        _summary([("DeepPose", [0.40, 0.42]), ("OCD-DeepPose", [0.43, 0.45])])
    )
    assert short["passed"].tolist() == [False, True, True]  # +3 AP: separated, but short of 5
    noisy = claims_mod.target_checks(
        _summary([("DeepPose", [0.30, 0.50]), ("OCD-DeepPose", [0.50, 0.52])])
    )
    assert noisy["passed"].tolist() == [True, False, True]  # +11 AP, but spread 14
    results = [_result("DeepPose", 0, 0.4), _result("OCD-DeepPose", 0, 0.6, params=1001)]
    one = claims_mod.target_checks(reporting.summary_frame(reporting.results_frame(results)))
    assert one["passed"].tolist() == [True, False, False]  # one seed; one extra parameter
    assert one["value"].tolist()[1:] == ["one seed: no spread", "1,001 vs 1,000"]
    # Without a run of a side (a time box, --no-train), nothing is judged, and it says why.
    unjudged = claims_mod.target_checks(_summary([("DeepPose", [0.4])]))
    assert unjudged["passed"].tolist() == [None]
    assert unjudged["value"].tolist() == ["not judged: OCD-DeepPose not trained"]


def test_ablation_frame_names_the_term_that_matters():
    summary = _summary(
        [
            ("DeepPose", [0.10, 0.12]),
            ("OCD-DeepPose", [0.20]),
            ("OCD: task-loss distillation only (b)", [0.11]),
            ("OCD: head distillation only (c)", [0.19]),
            ("SimpleBaseline (heatmap)", [0.5]),
        ]
    )
    ab = claims_mod.ablation_frame(summary)
    assert ab["label"].tolist() == [
        "DeepPose",
        "OCD-DeepPose",
        "OCD: task-loss distillation only (b)",
        "OCD: head distillation only (c)",
    ]
    assert ab["delta AP vs DeepPose"].tolist() == pytest.approx([0.0, 9.0, 0.0, 8.0])
    assert ab["delta AP vs OCD-DeepPose"].tolist() == pytest.approx([-9.0, 0.0, -9.0, -1.0])
    said = claims_mod.ablation_sentences(ab)
    assert said[0] == "OCD-DeepPose is +9.0 AP over DeepPose."
    assert said[1].startswith("The change that costs the most: OCD: task-loss distillation only")
    assert said[2].startswith("The change that costs the least: OCD: head distillation only (c)")
    assert said[3] == (
        "Rows that keep none of the gain (within a tenth of it): "
        "OCD: task-loss distillation only (b)."
    )
    assert "-0.0" not in " ".join(said)
    # Without the full method's runs there is no ablation to show (the tables name them).
    empty = claims_mod.ablation_frame(_summary([("DeepPose", [0.1])]))
    assert empty.empty and "delta AP vs OCD-DeepPose" in empty.columns
    assert claims_mod.ablation_sentences(empty) == []


def test_whole_body_heatmap_check_needs_a_clear_gap():
    summary = _summary(
        [
            ("DeepPose", [0.01, 0.02]),
            ("SimpleBaseline (heatmap)", [0.15, 0.14]),
            ("DeepPose (whole-body)", [0.000]),
            ("SimpleBaseline (whole-body)", [0.003]),
        ]
    )
    checks = claims_mod.sanity_checks(summary, _claims(summary)).set_index("check")
    assert checks.loc["heatmap baseline better than DeepPose", "passed"] == True  # noqa: E712
    wb = checks.loc["heatmap baseline better than DeepPose (whole-body)"]
    assert wb["value"] == "+0.3 AP, one seed" and wb["passed"] == False  # noqa: E712


def test_results_markdown_has_every_section():
    summary = _summary(
        [
            ("DeepPose", [0.40, 0.42]),
            ("OCD-DeepPose", [0.50, 0.52]),
            ("SimpleBaseline (heatmap)", [0.6]),
            ("OCD: head distillation only (c)", [0.45]),
        ]
    )
    text = reporting.results_markdown(summary, _rows(summary), PROFILES["smoke"])
    for part in (
        "# Results (smoke profile)",
        "## All experiments",
        "## Comparisons",
        "AP_std",
        "## Benchmark checks",
        "## The target",
        "## Which term matters",
    ):
        assert part in text
    assert "- OCD-DeepPose vs DeepPose: +10.0 AP" in text
    assert "DeepPose: AP50 at least 15" in text  # the floors of the rows gathered
    assert "whole-body" not in text
    # _result records 120 s of training per run: 6 runs, 12 min.
    assert "6 runs, 12 min of training loops in all" in text


def test_write_results_and_first_runs(tmp_path):
    summary = _summary([("DeepPose", [0.40, 0.42]), ("OCD-DeepPose", [0.50, 0.52])])
    md, csv = reporting.write_results(summary, _rows(summary), tmp_path, PROFILES["cpu"])
    assert md == tmp_path / "results.md" and "## Benchmark checks" in md.read_text()
    table = pd.read_csv(csv)
    assert list(table["label"]) == ["DeepPose", "OCD-DeepPose"]
    assert table["AP"].tolist() == pytest.approx([41.0, 51.0])
    assert {"AP_std", "seeds", "params", "GMACs", "config_hashes", "git_commits"} <= set(table)
    assert json.loads((tmp_path / "results.meta.json").read_text())["profile"] == "cpu"
    runs = reporting.first_runs(summary)
    assert list(runs) == ["DeepPose", "OCD-DeepPose"] and runs["DeepPose"].endswith("-s0")
    with pytest.raises(KeyError, match="RLE"):
        reporting.first_runs(summary, ["RLE"])


def test_same_deployed_size_compares_params():
    results = [_result("DeepPose", 0, 0.4, params=11), _result("OCD-DeepPose", 0, 0.5, params=11)]
    results.append(_result("SimpleBaseline (heatmap)", 0, 0.5, params=12))
    summary = reporting.summary_frame(reporting.results_frame(results))
    assert reporting.same_deployed_size(summary, "OCD-DeepPose", "DeepPose")
    assert not reporting.same_deployed_size(summary, "SimpleBaseline (heatmap)", "DeepPose")
    with pytest.raises(KeyError, match=r"needs the rows \['RLE'\]"):
        reporting.same_deployed_size(summary, "RLE", "DeepPose")


def test_training_curves_read_every_term(tmp_path):
    for name, extra, reg_loss in (
        ("a", "", "smooth_l1"),
        ("b", ",hm", "smooth_l1"),
        ("c", "", "rle"),
    ):
        d = tmp_path / name
        d.mkdir()
        rows = [f"{s},1,0.001,{1.0 / s}" + (f",{2.0 / s}" if extra else "") + f",{3.0 / s},0.1"
                for s in range(1, 41)]  # fmt: skip
        d.joinpath("log.csv").write_text(
            f"step,epoch,lr,reg{extra},total,time\n" + "\n".join(rows) + "\n"
        )
        d.joinpath("config.json").write_text(json.dumps({"loss": {"reg_loss": reg_loss}}))
    log = figures.read_log(tmp_path / "b")
    assert figures.loss_terms(log) == ["reg", "hm", "total"]
    assert figures.smooth(pd.Series([1.0, 3.0, 5.0]), 2).tolist() == [1.0, 2.0, 4.0]
    runs = {"A": tmp_path / "a", "B": tmp_path / "b", "C": tmp_path / "c"}
    fig = figures.training_curves_figure(runs)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    # SmoothL1 and RLE losses never share an axis; the heatmap term is shared.
    assert list(panels) == [
        "total (smooth_l1)",
        "total (rle)",
        "reg (smooth_l1)",
        "hm",
        "reg (rle)",
    ]
    assert [ln.get_label() for ln in panels["reg (smooth_l1)"].lines] == ["A", "B"]
    assert [ln.get_label() for ln in panels["reg (rle)"].lines] == ["C"]
    assert [ln.get_label() for ln in panels["hm"].lines] == ["B"]  # only run B logs it
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["A", "B", "C"]
    with pytest.raises(FileNotFoundError, match="log.csv"):
        figures.read_log(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        figures.run_reg_loss(tmp_path)


def test_smoke_runs_deployed_sizes_and_pictures(tmp_path, monkeypatch, coco_sample_dir):
    """Two real smoke runs through the run cache; the OCD student is exactly DeepPose's size.

    The same runs then feed the prediction pictures and the latency column.
    """
    monkeypatch.setenv("OCDLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("OCDLIB_DATA", str(tmp_path / "data"))
    # Keep the smoke profile (data, model, code path) but stop after a few steps.
    from ocdlib import configs

    smoke = configs.BASES["smoke"]
    monkeypatch.setitem(
        configs.BASES,
        PROFILES["smoke"],
        lambda: dataclasses.replace(
            smoke(), train=dataclasses.replace(smoke().train, epochs=1, max_steps=2)
        ),
    )
    rows = [by_label("DeepPose"), by_label("OCD-DeepPose")]
    results = gather(rows, PROFILES["smoke"], train_missing=True)
    df = reporting.results_frame(results)
    assert list(df["label"]) == ["DeepPose", "OCD-DeepPose"]
    assert list(df["head"]) == ["regression", "regression"]
    assert df["AP"].between(0, 100).all()
    summary = reporting.summary_frame(df)
    assert reporting.same_deployed_size(summary, "OCD-DeepPose", "DeepPose")
    # The heatmap head trained beside it is gone from the deployed model.
    from ocdlib.engine.run_dir import load_run_model

    full, _ = load_run_model(df.iloc[1]["run_dir"])
    student, _ = load_run_model(df.iloc[1]["run_dir"], student=True)
    n_student = sum(p.numel() for p in student.parameters())
    assert n_student == df.iloc[0]["params"] < sum(p.numel() for p in full.parameters())
    # Asked again, the runs come from the cache.
    again = gather(rows, PROFILES["smoke"])
    assert [r["run_dir"] for r in again] == list(df["run_dir"])
    assert (tmp_path / "runs" / ".locks").is_dir()

    # The heatmap head trained inside the OCD run is scored beside its student, once.
    aux = reporting.aux_head_frame(summary)
    assert aux["label"].tolist() == ["OCD-DeepPose"]  # DeepPose has no heatmap head
    assert aux["student AP"].iloc[0] == pytest.approx(df.iloc[1]["AP"])
    assert 0.0 <= aux["hm head AP"].iloc[0] <= 100.0
    cached = Path(df.iloc[1]["run_dir"]) / "eval_hm" / "metrics.json"
    before = cached.stat().st_mtime_ns
    assert reporting.aux_head_frame(summary)["hm head AP"].tolist() == aux["hm head AP"].tolist()
    assert cached.stat().st_mtime_ns == before  # read back, not recomputed
    # Other metrics side by side, each the same number as in the files.
    more = reporting.aux_head_frame(summary, metrics=("AP", "AP50"))
    assert list(more.columns[2:6]) == ["student AP", "student AP50", "hm head AP", "hm head AP50"]
    scored = json.loads(cached.read_text())
    assert more["hm head AP50"].iloc[0] == pytest.approx(100 * scored["AP50"])
    assert more["student AP50"].iloc[0] == pytest.approx(df.iloc[1]["AP50"])

    # Pictures: ground truth, then one panel per run, for each image.
    runs = reporting.first_runs(summary)
    fig = pictures.keypoint_comparison(runs, n_images=1)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("ground truth: ") and titles[1:] == ["DeepPose", "OCD-DeepPose"]
    fig = pictures.coco_sample_comparison(runs, coco_dir=coco_sample_dir, n_images=2)
    assert len(fig.axes) == 6 and "not expected to work well" in fig._suptitle.get_text()
    assert pictures.coco_sample_comparison(runs, coco_dir=tmp_path / "absent") is None
    assert (reporting.add_latency(summary, repeats=2)["latency_ms"] > 0).all()
    cfg = results[0]["config"]
    assert len(pictures.augmented_crops_figure(cfg, n=2, epochs=(0,)).axes) == 4
    fig = pictures.targets_figure(cfg, index=0)
    assert [ax.get_title() for ax in fig.axes][:2] == [
        "regression targets",
        "heatmap targets (max of 17)",
    ]


def test_annotation_stats_of_the_coco_sample(coco_sample_dir):
    from ocdlib.metainfo import COCO_BODY, COCO_WHOLEBODY

    body = annotation_stats(coco_sample_dir / "test_coco.json", coco_sample_dir, COCO_BODY)
    assert (body["images"], body["annotations"], body["instances"]) == (4, 14, 12)
    assert body["v=2 (visible)"] + body["v=1 (hidden)"] + body["v=0 (unlabelled)"] == 12 * 17
    assert body["v=2 (visible)"] > body["v=1 (hidden)"] > 0
    frame = stats_frame(
        {
            "body": (coco_sample_dir / "test_coco.json", coco_sample_dir, COCO_BODY),
            "wb": (coco_sample_dir / "test_coco_wholebody.json", coco_sample_dir, COCO_WHOLEBODY),
        }
    )
    assert list(frame["data"]) == ["body", "wb"] and list(frame["keypoints"]) == [17, 133]


def test_floor_checks_pass_fail_and_missing():
    summary = _summary([("DeepPose", [0.05, 0.04]), ("SimpleBaseline (heatmap)", [0.30])])
    with pytest.raises(KeyError, match=r"SimpleBaseline \(whole-body\)"):
        claims_mod.floor_checks(summary, FLOORS)  # a floor whose row did not run never passes
    checks = claims_mod.floor_checks(summary, FLOORS[:3]).set_index("check")
    assert checks.loc["DeepPose: AP at least 3", "passed"] == True  # noqa: E712
    assert checks.loc["DeepPose: AP at least 3", "value"] == "4.5"
    assert checks.loc["SimpleBaseline (heatmap): AP at least 35", "passed"] == False  # noqa: E712


def test_ap_per_row_figure_sorts_rows_and_marks_the_reference():
    runs = pd.DataFrame(
        {
            "label": ["DeepPose", "DeepPose", "OCD", "OCD", "SimpleBaseline"],
            "AP": [6.0, 5.0, 13.0, 12.0, 35.0],  # results_frame's AP is already x100
        }
    )
    fig = figures.ap_per_row_figure(runs, "DeepPose")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["DeepPose", "OCD", "SimpleBaseline"]
    assert [round(p.get_width(), 2) for p in ax.patches] == [5.5, 12.5, 35.0]
    assert ax.lines[-1].get_xdata()[0] == 5.5  # the dashed line at DeepPose's mean


def test_tables_say_the_precision_each_row_trained_in():
    """The same config trains to different numbers in bf16 and fp32: a row says which."""
    results = [
        _result("DeepPose", 0, 0.40, precision_tag="bf16"),
        _result("DeepPose", 1, 0.44, precision="bf16 autocast + channels_last"),  # older record
        _result("OCD-DeepPose", 0, 0.50, precision="fp32 + channels_last"),
    ]
    runs = reporting.results_frame(results)
    assert list(runs["precision"]) == ["bf16", "bf16", "fp32"]
    shown = reporting.display_frame(reporting.summary_frame(runs))
    assert list(shown["precision"]) == ["bf16", "fp32"]


def test_heatmap_head_of_a_record_without_its_scores_is_left_empty(tmp_path, capsys):
    """A run record keeps no weights: where it kept no scores of the heatmap head either,
    the table leaves that cell empty and says why, instead of stopping the notebook."""
    cfg = config_for(by_label("OCD-DeepPose"), PROFILES["smoke"], 0)
    record = tmp_path / "record"
    record.mkdir()
    (record / "config.json").write_text(cfg.to_json())
    result = {"metrics": {"AP": 0.25}, "seed": 0, "config_hash": cfg.hash}
    (record / "result.json").write_text(json.dumps(result))
    summary = pd.DataFrame([{"label": "OCD-DeepPose", "run_dirs": [str(record)]}])
    aux = reporting.aux_head_frame(summary)
    assert aux.loc[0, "student AP"] == 25.0 and math.isnan(aux.loc[0, "hm head AP"])
    assert "no weights and no kept scores of its hm head" in capsys.readouterr().out
