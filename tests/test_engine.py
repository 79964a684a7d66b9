"""End-to-end training on the smoke profile: result, run cache, resume, DDP, failures."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace

import pytest
import torch
import torch.multiprocessing as mp

from ocdlib.configs import build_config
from ocdlib.engine import run_dir as runs_mod
from ocdlib.engine.trainer import NonFiniteLossError, lr_factor, train
from ocdlib.runs.cache import get_run, run_dir


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """Private data and run folders (the smoke SynthPose copy is generated once per module)."""
    root = tmp_path_factory.mktemp("ocdhome")
    old = {k: os.environ.get(k) for k in ("OCDLIB_DATA", "OCDLIB_RUNS")}
    os.environ["OCDLIB_DATA"] = str(root / "data")
    os.environ["OCDLIB_RUNS"] = str(root / "runs")
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def smoke(method="deeppose", **sets):
    base = {"train.deterministic": True, "train.epochs": 2, "train.max_steps": 0}
    base.update(sets)
    return build_config(f"smoke_{method}", base)


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def assert_same_weights(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0), k


def test_lr_schedule_warmup_and_steps():
    cfg = build_config("coco_r50").train
    assert lr_factor(0, 100, cfg) == pytest.approx(0.001)
    assert lr_factor(250, 100, cfg) == pytest.approx(0.001 + 0.999 * 0.5)
    assert lr_factor(500, 100, cfg) == 1.0
    assert lr_factor(170 * 100, 100, cfg) == pytest.approx(0.1)
    assert lr_factor(200 * 100, 100, cfg) == pytest.approx(0.01)


def test_smoke_run_writes_result_and_the_cache_reuses_it(homes, monkeypatch):
    cfg = smoke("ocd")
    result = get_run(cfg, progress=False)
    d = run_dir(cfg)
    for f in (
        "config.json",
        "checkpoint.pt",
        "log.csv",
        "metrics.json",
        "predictions.json",
        "student.pt",
        "result.json",
    ):
        assert (d / f).is_file(), f
    assert 0.0 <= result["metrics"]["AP"] <= 1.0
    assert result["config_hash"] == cfg.hash and result["seed"] == cfg.train.seed
    header = (d / "log.csv").read_text().splitlines()[0].split(",")
    assert {"reg", "hm", "task_distill", "head_distill", "total"} <= set(header)

    def boom(*a, **k):
        raise AssertionError("the cache should not train again")

    monkeypatch.setattr("ocdlib.runs.cache.train", boom)
    again = get_run(cfg, progress=False)
    assert again["metrics"] == result["metrics"]


def test_killed_run_resumes_to_the_same_weights_and_metrics(homes, tmp_path):
    cfg = smoke()
    full = train(cfg, tmp_path / "full", progress=False)
    partial = train(cfg, tmp_path / "killed", progress=False, stop_after_epochs=1)
    assert partial == {"stopped_at_epoch": 1}
    assert not (tmp_path / "killed" / "result.json").exists()
    resumed = train(cfg, tmp_path / "killed", resume=True, progress=False)
    assert_same_weights(
        weights(tmp_path / "full" / "student.pt"), weights(tmp_path / "killed" / "student.pt")
    )
    assert resumed["metrics"] == full["metrics"]
    log_full = (tmp_path / "full" / "log.csv").read_text().splitlines()
    log_resumed = (tmp_path / "killed" / "log.csv").read_text().splitlines()
    assert len(log_full) == len(log_resumed)


def test_finished_run_keeps_weights_only_and_rescoring_it_changes_nothing(homes, tmp_path):
    cfg = smoke("ocd")
    out = tmp_path / "run"
    first = train(cfg, out, progress=False)
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert ckpt["finished"] and not {"optimizer", "scheduler", "rng"} & ckpt.keys()
    assert (ckpt["epoch"], ckpt["step"]) == (cfg.train.epochs, first["steps"])
    evals = json.loads((out / "evals.json").read_text())
    again = train(cfg, out, resume=True, progress=False)
    assert again["metrics"] == first["metrics"] and again["steps"] == first["steps"]
    assert json.loads((out / "evals.json").read_text()) == evals
    rescored = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (rescored["epoch"], rescored["step"]) == (ckpt["epoch"], ckpt["step"])
    assert_same_weights(rescored["model"], ckpt["model"])


def test_resume_refuses_a_checkpoint_of_another_config(homes, tmp_path):
    train(smoke(), tmp_path / "run", progress=False, stop_after_epochs=1)
    with pytest.raises(ValueError, match="written by config"):
        train(smoke(**{"train.lr": 0.5}), tmp_path / "run", resume=True, progress=False)


def test_non_finite_loss_names_the_term_and_keeps_the_checkpoint(homes, tmp_path, monkeypatch):
    import ocdlib.engine.trainer as trainer

    real = trainer.build_objective

    def poisoned(*args, **kwargs):
        objective = real(*args, **kwargs)
        forward = objective.forward

        def nan_after_first_epoch(model, batch, step):
            total, terms = forward(model, batch, step)
            if step >= 9:  # the second epoch: the first left a checkpoint
                terms = {**terms, "reg": torch.tensor(float("nan"))}
                total = total * float("nan")
            return total, terms

        objective.forward = nan_after_first_epoch
        return objective

    monkeypatch.setattr(trainer, "build_objective", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"'reg' is nan at step 9 \(epoch 2\)") as err:
        train(smoke(**{"train.epochs": 3}), tmp_path / "nan", progress=False)
    assert "checkpoint.pt" in str(err.value)
    assert (tmp_path / "nan" / "checkpoint.pt").is_file()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg, out, data_home):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        OCDLIB_DATA=data_home,
    )
    torch.set_num_threads(1)
    train(cfg, out, progress=False)


def test_two_process_gloo_matches_one_process(homes, tmp_path):
    # BatchNorm statistics are per process under DDP (as in mmpose); freeze them so
    # that both runs compute the same function of the same global batch. In fp32: bf16
    # rounding differs between a batch of 4 and two of 2 by far more than the tolerance.
    # Adam moves a weight by up to lr (1e-3) a step, and near-zero gradients summed in
    # another order can move a few of 11M weights by ~1e-5 (seen on AVX-512 CPUs); a
    # sharding or averaging fault moves many by a good part of a step, far above 1e-4.
    cfg = smoke(
        **{"train.norm_eval": True, "train.max_steps": 3, "train.epochs": 1, "train.amp": False}
    )
    cfg = replace(cfg, eval=replace(cfg.eval, flip_test=False))
    train(cfg, tmp_path / "one", progress=False)
    mp.spawn(
        _ddp_worker,
        args=(2, _free_port(), cfg, tmp_path / "two", os.environ["OCDLIB_DATA"]),
        nprocs=2,
        join=True,
    )
    assert_same_weights(
        weights(tmp_path / "one" / "checkpoint.pt"),
        weights(tmp_path / "two" / "checkpoint.pt"),
        atol=1e-4,
    )
    one = json.loads((tmp_path / "one" / "result.json").read_text())
    two = json.loads((tmp_path / "two" / "result.json").read_text())
    assert one["val_instances"] == two["val_instances"]
    assert two["world_size"] == 2
    assert abs(one["metrics"]["AP"] - two["metrics"]["AP"]) < 1e-3


def test_run_metadata_records_provenance():
    meta = runs_mod.run_metadata(smoke())
    assert set(meta) >= {"config_hash", "seed", "git_commit", "command"}


def test_run_lock_makes_a_second_caller_wait(tmp_path):
    import threading

    got = threading.Event()

    def second():
        with runs_mod.run_lock(tmp_path / "run"):
            got.set()

    with runs_mod.run_lock(tmp_path / "run"):
        t = threading.Thread(target=second)
        t.start()
        assert not got.wait(0.3)  # blocked while the first holder keeps the lock
    t.join(5)
    assert got.is_set()


def test_a_compiled_run_trains_as_the_eager_one_and_saves_plain_weights(
    homes, tmp_path, monkeypatch
):
    import pandas as pd

    from ocdlib.engine import trainer

    compiled = []
    real = torch.compile

    def compile_eagerly(model, **kw):  # dynamo's tracing without inductor's C++ build
        compiled.append(model)
        return real(model, backend="eager")

    monkeypatch.setattr(trainer.torch, "compile", compile_eagerly)
    totals = {}
    for on in (False, True):
        cfg = smoke(**{"train.epochs": 1, "train.max_steps": 3, "train.compile": on})
        train(cfg, tmp_path / str(on), progress=False)
        totals[on] = pd.read_csv(tmp_path / str(on) / "log.csv")["total"].tolist()
        state = torch.load(tmp_path / str(on) / "checkpoint.pt", weights_only=False)["model"]
        assert not any(k.startswith(("_orig_mod.", "module.")) for k in state)
    assert (
        len(compiled) == 1 and cfg.hash == smoke(**{"train.epochs": 1, "train.max_steps": 3}).hash
    )
    assert totals[True] == pytest.approx(totals[False], rel=1e-5)
    assert trainer.unwrapped(real(compiled[0])) is trainer.unwrapped(compiled[0])


def test_terms_that_start_mid_epoch_are_logged_from_their_first_step(homes, tmp_path):
    # Losses are read from the device several steps at a time; distillation terms join
    # after the warm-up, inside such a window.
    import pandas as pd

    cfg = smoke("ocd", **{"train.epochs": 1, "train.max_steps": 5, "loss.distill_warmup_steps": 2})
    train(cfg, tmp_path / "warm", progress=False)
    log = pd.read_csv(tmp_path / "warm" / "log.csv")
    assert log["step"].tolist() == [1, 2, 3, 4, 5]
    late = [c for c in log.columns if log[c].isna().any()]
    assert late, "no term started after the warm-up"
    for column in late:
        assert log[column].isna().tolist() == [True, True, False, False, False], column
