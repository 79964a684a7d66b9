"""SIGTERM and Ctrl-C stop a run cleanly at a step boundary, and it resumes exactly there."""

import csv
import os
import signal
import subprocess
import sys

import pytest
import torch

import ocdlib.engine.hooks as hooks
import ocdlib.engine.trainer as trainer
from ocdlib.configs import build_config
from ocdlib.engine.checkpoint import atomic_write_text
from ocdlib.engine.interrupt import StopRequest
from ocdlib.engine.run_dir import RunDir
from ocdlib.errors import RunInterrupted


@pytest.fixture
def homes(tmp_path, monkeypatch):
    monkeypatch.setenv("OCDLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("OCDLIB_RUNS", str(tmp_path / "runs"))
    return tmp_path


def smoke():
    return build_config(
        "smoke_ocd", {"train.deterministic": True, "train.epochs": 2, "train.max_steps": 0}
    )


def signal_after(monkeypatch, steps: int, signum: int) -> None:
    """Deliver `signum` to this process during training step number `steps`."""
    real = trainer.backward_step
    calls = {"n": 0}

    def step_then_signal(*args, **kwargs):
        real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == steps:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(trainer, "backward_step", step_then_signal)


def rows(path):
    return [{k: v for k, v in r.items() if k != "time"} for r in csv.DictReader(path.open())]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_at_the_next_step_saved_and_the_run_resumes_exactly(
    homes, tmp_path, monkeypatch, signum
):
    cfg = smoke()
    full = trainer.train(cfg, tmp_path / "full", progress=False)
    out = tmp_path / "stopped"
    (out).mkdir()
    (out / "checkpoint.pt.abc123.tmp").write_bytes(b"half a checkpoint")  # a SIGKILL's leftover
    signal_after(monkeypatch, 3, signum)
    with pytest.raises(RunInterrupted) as err:
        trainer.train(cfg, out, progress=False)
    assert err.value.exit_status == 128 + signum
    assert "after step 3 (epoch 1, batch 3 of" in str(err.value) and "resume" in str(err.value)
    assert not list(out.glob("*.tmp")) and not (out / "result.json").exists()
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (ckpt["epoch"], ckpt["step"], ckpt["epoch_batches"]) == (0, 3, 3)
    assert signal.getsignal(signum) is not None  # the previous handler is back
    monkeypatch.undo()
    resumed = trainer.train(cfg, out, resume=True, progress=False)
    assert resumed["metrics"] == full["metrics"] and resumed["steps"] == full["steps"]
    a = torch.load(tmp_path / "full" / "student.pt", weights_only=False)["model"]
    b = torch.load(out / "student.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert rows(out / "log.csv") == rows(tmp_path / "full" / "log.csv")


def test_the_handlers_are_restored_after_the_run():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with StopRequest() as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._handle
    assert {s: signal.getsignal(s) for s in before} == before


def test_the_command_line_exits_with_128_plus_the_signal(homes, tmp_path):
    """A real SIGTERM from outside, as a cluster scheduler sends it."""
    out = tmp_path / "run"
    code = (
        "import os, signal, sys\n"
        "import ocdlib.engine.trainer as t\n"
        "real = t.backward_step\n"
        "n = [0]\n"
        "def step(*a, **k):\n"
        "    real(*a, **k); n[0] += 1\n"
        "    if n[0] == 2: os.kill(os.getpid(), signal.SIGTERM)\n"
        "t.backward_step = step\n"
        "from ocdlib.__main__ import main\n"
        f"sys.exit(main(['train', '--config', 'smoke_deeppose', '--out', {str(out)!r},"
        " '--no-progress']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ
    )
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "stopped by SIGTERM" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "checkpoint.pt").is_file() and not list(out.glob("*.tmp"))


def test_atomic_writes_leave_no_temporary_file(tmp_path):
    atomic_write_text("x", tmp_path / "a.json")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_run_stopped_under_ddp_saves_weights_a_resume_can_load(tmp_path):
    # The training loop holds the DDP wrapper (and with train.compile, torch.compile's);
    # the checkpoint must hold the model's own keys, not "module."-prefixed ones.
    import types

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from ocdlib.engine.distributed import DistInfo

    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1
    )
    try:
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        optimizer = torch.optim.Adam(model.parameters())
        loop = types.SimpleNamespace(
            model=DistributedDataParallel(model),
            objective=torch.nn.Module(),
            cfg=smoke(),
            skipped=None,
            dist=DistInfo(),
            optimizer=optimizer,
            scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
            out_dir=tmp_path,
            files=RunDir(tmp_path),
            rows=[],
            evals=[],
            epoch=0,
            step=3,
            train_time=1.0,
            loader=range(8),
            batches_done=3,
            stop=types.SimpleNamespace(signum=signal.SIGTERM),
        )
        hooks._save_mid_epoch(loop)
        assert isinstance(hooks._interrupted(loop), RunInterrupted)
    finally:
        dist.destroy_process_group()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state)


def _wait_for_a_stop(ready: str) -> None:
    """A stand-in for a side-by-side run: saves (here: returns) on its first SIGTERM."""
    import time
    from pathlib import Path

    got = []
    signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    Path(ready).write_text("ready")
    t0 = time.monotonic()
    while not got and time.monotonic() - t0 < 60:
        time.sleep(0.02)
    if got:
        raise RunInterrupted("run saved at step 3", got[0])
    raise RuntimeError("no SIGTERM reached the run")


def test_a_sigterm_to_reproduce_reaches_the_runs_it_trains_side_by_side(tmp_path):
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor

    from ocdlib.reproduce.stops import ForwardStops

    ready = tmp_path / "ready"
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool, ForwardStops(pool, "CMD") as stops:
        fut = pool.submit(_wait_for_a_stop, str(ready))
        t0 = time.monotonic()
        while not ready.exists() and time.monotonic() - t0 < 60:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)  # to the command only, as `kill PID` sends it
        with pytest.raises(RunInterrupted, match="saved at step 3") as err:
            fut.result(timeout=60)
        assert err.value.signum == signal.SIGTERM  # the run's own error, whole, across processes
        assert stops.requested
        assert "CMD resumes them" in str(stops.interrupted())
    assert signal.getsignal(signal.SIGTERM) is not stops._handle
