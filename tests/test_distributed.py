"""Training in several processes: torchrun + DistributedDataParallel, here with 2 CPU processes
and gloo. Two processes with --batch-size B/2 must train as one process with --batch-size B
(float tolerance; no normalisation, no dropout, no image pool, so that nothing but the
gradient reduction differs), write one set of outputs, and resume with another number of
processes; `--nproc` hands over to torchrun; a failing rank ends the run with a clear message
and a checkpoint that resumes; every rank's random streams and image pools are checkpointed.

(No normalisation in the comparisons: a convolution's bias just before instance norm has a
gradient that is zero but for rounding, and Adam scales that rounding noise up to full steps,
so those biases would differ by ~lr per step whatever the number of processes.)"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from img2img.cli import main
from img2img.data.synthetic import write_palette_dataset, write_shapes_dataset
from img2img.errors import UsageError
from img2img.testing.hold import hold_at, release, wait_until_held
from img2img.train import distributed, train_cyclegan, train_pix2pix
from img2img.train.checkpoint import save_checkpoint
from img2img.train.config import CycleGANConfig, Pix2PixConfig
from img2img.train.model import inference_copy
from img2img.train.run_folder import load_run_config

# 8 images, 4 iterations an epoch at a global batch of 2; 3 epochs (the last with a decaying rate)
P2P = dict(
    netg="unet_32",
    ngf=8,
    ndf=8,
    preprocess="resize_and_crop",
    load_size=32,
    crop_size=32,
    norm="none",
    dropout=False,
    seed=0,
    device="cpu",
    amp=False,
    val_size=2,
    n_samples=2,
    print_freq=2,
    n_epochs=2,
    n_epochs_decay=1,
    save_latest_freq=3,
)
CYC = dict(
    netg="resnet_1blocks",
    ngf=8,
    ndf=8,
    preprocess="resize_and_crop",
    load_size=36,
    crop_size=32,
    norm="none",
    seed=0,
    device="cpu",
    amp=False,
    val_size=2,
    n_samples=1,
    print_freq=4,
    pool_size=0,
    n_epochs=1,
    n_epochs_decay=1,
)
TIMEOUT = 240


def flags(options: dict) -> list[str]:
    """Command-line flags for config fields (booleans as the CLI spells them)."""
    out = []
    for key, value in options.items():
        name = "--" + key.replace("_", "-")
        if key == "dropout":
            out.append("--dropout" if value else "--no-dropout")
        elif key == "amp":
            out.append("--amp" if value else "--no-amp")
        else:
            out += [name, str(value)]
    return out


def env() -> dict[str, str]:
    """One thread a process: these networks are tiny, and 2 processes share 2 cores."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun(args: list[str], cwd: Path, *, nproc: int = 2, script: str | None = None) -> subprocess.CompletedProcess:
    target = [script] if script else ["-m", "img2img"]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        *target,
        *args,
    ]
    return subprocess.run(command, cwd=cwd, env=env(), capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("data") / "shapes", n_train=8, n_val=2, size=32)


@pytest.fixture(scope="module")
def palettes(tmp_path_factory) -> Path:
    return write_palette_dataset(tmp_path_factory.mktemp("data") / "palettes", n_a=8, n_b=6, n_test=2, size=32)


def state_tensors(run: Path) -> dict[str, torch.Tensor]:
    """Networks and optimizer states of a run's latest checkpoint (not its random streams)."""
    tensors = load_file(run / "checkpoints" / "latest.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith(("s/networks/", "s/optimizers/"))}


def checkpoint_info(run: Path) -> dict:
    import json

    with safe_open(str(run / "checkpoints" / "latest.safetensors"), "pt") as handle:
        return json.loads(handle.metadata()["img2img_checkpoint"])


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = 1e-5) -> None:
    """Equal within float32 rounding: each tensor to ``tol`` of its own scale (Adam's first
    moments reach 4 here; the weights stay below 1)."""
    assert a.keys() == b.keys()
    excess = []
    for key in a:
        x, y = a[key].double(), b[key].double()
        difference, scale = float((x - y).abs().max()), max(1.0, float(x.abs().max()))
        excess.append((difference / scale, difference, key))
    worst = max(excess)
    assert worst[0] <= tol, f"largest difference {worst[1]:.3g} in {worst[2]}"


def listing(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*"))


@pytest.fixture(scope="module")
def pix2pix_one_process(shapes, tmp_path_factory) -> Path:
    """The reference: one process with the global batch (2)."""
    run = tmp_path_factory.mktemp("one") / "run"
    train_pix2pix(Pix2PixConfig(**P2P, data=str(shapes), out=str(run), batch_size=2), stream=io.StringIO())
    return run


# --- two processes train as one with the global batch ----------------------------------------------------


def test_pix2pix_two_processes_train_as_one_process_with_the_global_batch(shapes, pix2pix_one_process, tmp_path):
    run = tmp_path / "run"
    done = torchrun(
        ["train", "pix2pix", "--data", str(shapes), "--out", str(run), *flags(P2P), "--batch-size", "1"], tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert_close(state_tensors(pix2pix_one_process), state_tensors(run))
    for direction_file in ("weights/pix2pix_AtoB.safetensors",):
        assert_close(load_file(pix2pix_one_process / direction_file), load_file(run / direction_file))

    # one set of outputs, written by rank 0: the same files as the one-process run, no more
    assert listing(run) == listing(pix2pix_one_process)
    metrics = (run / "metrics.csv").read_text().splitlines()
    reference = (pix2pix_one_process / "metrics.csv").read_text().splitlines()
    assert len(metrics) == len(reference) == 1 + 3 * (2 + 1)
    # the logged losses are averaged over both processes' images: the one-process figures
    for ours, theirs in zip(metrics[1:], reference[1:]):
        ours_values = [float(x) if x else 0.0 for x in ours.split(",")[5:]]
        their_values = [float(x) if x else 0.0 for x in theirs.split(",")[5:]]
        assert ours.split(",")[:3] == theirs.split(",")[:3]  # scope, epoch, iteration
        assert ours_values == pytest.approx(their_values, rel=1e-4)

    # rank 0 reports, once; the other rank says nothing
    err = done.stderr
    assert err.count("training pix2pix in") == 1 and err.count("finished: pix2pix, 3 epochs, 12 iterations") == 1
    assert "batch 1 per process x 2 processes = 2" in err and "DDP gloo" in err
    assert "[rank 1]" not in err and "Traceback" not in err

    # the checkpoint holds plain state dicts (no DDP "module." prefix) and both ranks' streams
    tensors = load_file(run / "checkpoints" / "latest.safetensors")
    assert not any(".module." in key or "/module." in key for key in tensors)
    assert "s/rank_states/0/rng/torch" in tensors and "s/rank_states/1/rng/torch" not in tensors
    assert not torch.equal(tensors["s/rank_states/0/rng/torch"], tensors["s/rng/torch"])  # rank 1 has its own
    assert checkpoint_info(run)["world_size"] == 2


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _rank_of(pid: int) -> int | None:
    try:
        variables = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for variable in variables:
        if variable.startswith(b"RANK="):
            return int(variable[5:])
    return None


def test_nproc_run_with_a_killed_rank_resumes_on_one_process(shapes, tmp_path):
    """`--nproc 2` hands over to torchrun; rank 1 is killed (SIGKILL) mid-run: the run ends
    with a message saying so, and the last checkpoint resumes on one process (with
    --batch-size 2: the global batch stays 2), to the weights of an uninterrupted run."""
    long = {**P2P, "n_epochs": 12, "n_epochs_decay": 0, "print_freq": 1}
    run, holds = tmp_path / "run", tmp_path / "holds"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "img2img",
            "train",
            "pix2pix",
            "--data",
            str(shapes),
            "--out",
            str(run),
            *flags(long),
            "--batch-size",
            "1",
            "--nproc",
            "2",
        ],
        cwd=tmp_path,
        env={**env(), **hold_at(holds, "iteration-5")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Both ranks held before iteration 5: the first epoch's checkpoint (iteration 4) is written.
        held = wait_until_held(holds, "iteration-5", lambda: proc.poll() is None, count=2)
        workers = {_rank_of(pid): pid for pid in _children(proc.pid)}
        assert set(workers) == {0, 1} and sorted(workers.values()) == held, (workers, held)
        os.kill(workers[1], signal.SIGKILL)
        release(holds, "iteration-5")
        err = proc.communicate(timeout=TIMEOUT)[1]  # a hang guard
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "training process rank 1 was killed by SIGKILL" in err
    assert f"resume with img2img train pix2pix --resume {run}" in err
    assert err.count("img2img: error:") <= 3 and "Traceback" not in err  # one line per process at most
    stopped_at = checkpoint_info(run)["iteration"]
    assert stopped_at == 4

    log = io.StringIO()
    config = load_run_config(run, Pix2PixConfig, {"batch_size": 2}, world_size=1)
    result = train_pix2pix(config, resume=True, stream=log)
    assert result.iterations == 48
    assert "the run had 2 processes, it resumes with 1: global batch 2 as before" in log.getvalue()
    reference = tmp_path / "reference"
    train_pix2pix(Pix2PixConfig(**long, data=str(shapes), out=str(reference), batch_size=2), stream=io.StringIO())
    assert_close(state_tensors(reference), state_tensors(run))


def test_cyclegan_one_process_run_resumes_on_two_processes(palettes, tmp_path):
    """CycleGAN (both generators run several times a step: cycle and identity) trained for an
    epoch in one process with --batch-size 2, resumed in two with --batch-size 1, ends where an
    uninterrupted one-process run ends."""
    run, reference = tmp_path / "run", tmp_path / "reference"
    train_cyclegan(
        CycleGANConfig(**CYC, data=str(palettes), out=str(run), batch_size=2), stream=io.StringIO(), stop_after_epochs=1
    )
    done = torchrun(["train", "cyclegan", "--resume", str(run), "--batch-size", "1"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the run had 1 process, it resumes with 2: global batch 2 as before" in done.stderr
    assert done.stderr.count("finished: cyclegan, 2 epochs, 8 iterations") == 1
    train_cyclegan(CycleGANConfig(**CYC, data=str(palettes), out=str(reference), batch_size=2), stream=io.StringIO())
    assert_close(state_tensors(reference), state_tensors(run))
    assert sorted(p.name for p in (run / "weights").iterdir()) == [
        "cyclegan_AtoB.safetensors",
        "cyclegan_BtoA.safetensors",
    ]
    assert listing(run) == listing(reference)


def test_a_resumed_two_process_run_continues_every_rank_s_streams(palettes, tmp_path):
    """With dropout (each rank's RNG) and image pools (each rank's own), a 2-process run stopped
    after its first epoch and resumed in 2 processes is bit for bit the uninterrupted one."""
    options = {k: v for k, v in CYC.items() if k not in ("n_epochs", "n_epochs_decay")}
    options.update(pool_size=3, dropout=True, n_epochs_decay=0)
    args = ["--data", str(palettes), *flags(options), "--batch-size", "1"]
    full = torchrun(["train", "cyclegan", *args, "--out", "full", "--n-epochs", "2"], tmp_path)
    assert full.returncode == 0, full.stderr
    first = torchrun(["train", "cyclegan", *args, "--out", "split", "--n-epochs", "1"], tmp_path)
    assert first.returncode == 0, first.stderr
    pools = load_file(tmp_path / "split" / "checkpoints" / "latest.safetensors")
    assert "s/rank_states/0/extra/fake_A_pool/rng" in pools and "s/rank_states/0/rng/torch" in pools
    second = torchrun(["train", "cyclegan", "--resume", "split", "--n-epochs", "2"], tmp_path)
    assert second.returncode == 0, second.stderr
    a = load_file(tmp_path / "full" / "checkpoints" / "latest.safetensors")
    b = load_file(tmp_path / "split" / "checkpoints" / "latest.safetensors")
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, different[:5]


# --- failures ----------------------------------------------------------------------------------------

FAILING = """
import os, sys
from img2img.train.pix2pix import Pix2PixModel
from img2img.cli import main

real_step, calls = Pix2PixModel.train_step, [0]

def step(self, batch):
    calls[0] += 1
    if calls[0] == 7 and os.environ["RANK"] == "1":
        raise RuntimeError("simulated failure")
    return real_step(self, batch)

Pix2PixModel.train_step = step
main(sys.argv[1:])
"""


def test_a_failing_rank_ends_the_run_with_a_clear_message_and_a_resumable_checkpoint(shapes, tmp_path):
    (tmp_path / "failing.py").write_text(FAILING)
    run = tmp_path / "run"
    done = torchrun(
        ["train", "pix2pix", "--data", str(shapes), "--out", str(run), *flags(P2P), "--batch-size", "1"],
        tmp_path,
        script="failing.py",
    )
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("img2img: error:")]
    assert len(ours) == 2, done.stderr
    assert (
        ours[0] == "img2img: error: [rank 1] RuntimeError: simulated failure (run again with --debug for the traceback)"
        or ours[1]
        == "img2img: error: [rank 1] RuntimeError: simulated failure (run again with --debug for the traceback)"
    )
    stopped = next(line for line in ours if "[rank 1]" not in line)
    assert "stopped because another process of this run failed" in stopped
    assert f"resume with: img2img train pix2pix --resume {run}" in stopped
    assert "RuntimeError: simulated failure" in done.stderr.split("Root Cause")[1]  # torchrun names rank 1
    assert checkpoint_info(run)["iteration"] == 6  # saved every 3 iterations; rank 1 failed in its 7th
    assert main_code(["train", "pix2pix", "--resume", str(run), "--batch-size", "2"]) == 0
    assert checkpoint_info(run)["iteration"] == 12


def test_set_up_problems_are_reported_once(shapes, tmp_path):
    """Every rank checks; rank 0 reports (here: SyncBatchNorm, which PyTorch runs on CUDA only);
    `--nproc` exits with the processes' exit code."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "img2img",
            "train",
            "pix2pix",
            "--data",
            str(shapes),
            "--out",
            "run",
            *flags(P2P),
            "--sync-bn",
            "--nproc",
            "2",
        ],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2
    ours = [line for line in done.stderr.splitlines() if line.startswith("img2img: error:")]
    assert ours == [
        "img2img: error: --sync-bn: PyTorch's SyncBatchNorm runs on CUDA devices only; leave it out "
        "on the CPU (each process then normalises over its own --batch-size images)"
    ], done.stderr
    assert not (tmp_path / "run").exists()


def main_code(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


# --- the pieces ------------------------------------------------------------------------------------------


def test_nproc_hands_over_the_command_line_to_torchrun(shapes, tmp_path, monkeypatch):
    calls = []

    def fake_launch(nproc, args, **where):
        calls.append((nproc, args, where))
        return 0

    monkeypatch.setattr(distributed, "launch_local", fake_launch)
    monkeypatch.chdir(tmp_path)
    code = main_code(
        [
            "train",
            "pix2pix",
            "--data",
            str(shapes),
            "--nproc",
            "2",
            "--no-flip",
            "--no-amp",
            "--norm",
            "instance",
            "--lr",
            "0.001",
            "--channels-last",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    nproc, args, where = calls[0]
    assert nproc == 2
    assert args == [  # what was given, in the command's order, without --nproc
        "train",
        "pix2pix",
        "--data",
        str(shapes),
        "--no-flip",
        "--norm",
        "instance",
        "--lr",
        "0.001",
        "--device",
        "cpu",
        "--no-amp",
        "--channels-last",
    ]
    assert where == {"device_option": "cpu", "task": "pix2pix", "run_dir": "runs/shapes_pix2pix"}
    assert distributed.torchrun_arguments(2, args) == [
        "--standalone",
        "--nproc-per-node",
        "2",
        "--module",
        "img2img",
        *args,
    ]
    assert not (tmp_path / "runs").exists()  # the processes write, not the launcher


def test_nproc_is_refused_under_torchrun_and_checked(shapes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main_code(["train", "pix2pix", "--data", str(shapes), "--nproc", "2"]) == 2
    assert "already started by torchrun (WORLD_SIZE=2)" in capsys.readouterr().err
    monkeypatch.delenv("LOCAL_RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert main_code(["train", "pix2pix", "--data", str(shapes), "--nproc", "0"]) == 2
    assert main_code(["train", "pix2pix", "--data", str(shapes), "--nproc", "2", "--device", "cuda:1"]) == 2
    assert "each one takes the GPU of its LOCAL_RANK" in capsys.readouterr().err


def test_resume_batch_size_may_change_only_to_keep_the_global_batch(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    config = Pix2PixConfig(data="data", out=str(run), batch_size=2)
    (run / "config.json").write_text(__import__("json").dumps(config.to_dict()))
    save_checkpoint(run / "checkpoints" / "latest.safetensors", {}, {"world_size": 2})  # 2 x 2 = 4
    assert load_run_config(run, Pix2PixConfig, {"batch_size": 4}, world_size=1).batch_size == 4
    assert load_run_config(run, Pix2PixConfig, {"batch_size": 1}, world_size=4).batch_size == 1
    assert load_run_config(run, Pix2PixConfig, {}, world_size=1).batch_size == 2  # global batch 2 then
    with pytest.raises(
        UsageError, match="global batch of 4 .2 per process x 2 processes.; with 1 process give --batch-size 4"
    ):
        load_run_config(run, Pix2PixConfig, {"batch_size": 3}, world_size=1)


def test_sync_batchnorm_conversion_keeps_the_weights_format():
    from img2img.models.config import GeneratorConfig
    from img2img.models.networks import build_generator

    torch.manual_seed(0)
    net = build_generator(GeneratorConfig(arch="unet", num_downs=5, ngf=4, norm="batch"))
    keys = list(net.state_dict())
    synced = distributed.convert_sync_batchnorm(net)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    assert list(synced.state_dict()) == keys
    assert {id(p) for p in synced.parameters()} == {id(p) for p in net.parameters()}  # the optimizers' own
    # the rank-0 inference copy runs plain (per-image) batch norm, as `translate` does
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    plain = build_generator(GeneratorConfig(arch="unet", num_downs=5, ngf=4, norm="batch"))
    plain.load_state_dict(synced.state_dict())
    with torch.no_grad():
        ours = inference_copy(synced, eval_mode=False)(x)
        expected = inference_copy(plain, eval_mode=False)(x)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in inference_copy(synced, eval_mode=True).modules())
    assert torch.allclose(ours, expected, atol=1e-6)


def test_rank_seeds():
    assert distributed.rank_seed(7, 0) == 7  # one process trains as a plain run
    seeds = {distributed.rank_seed(7, rank) for rank in range(8)} | {distributed.rank_seed(7, 1, 100)}
    assert len(seeds) == 9 and all(0 <= s < 2**31 for s in seeds)
    assert not distributed.active() and distributed.max_over_ranks(3) == 3
    assert distributed.mean_over_ranks({"a": 1.0}) == {"a": 1.0} and distributed.gather_to_main(5) == [5]


def test_single_process_sync_bn_is_a_note(shapes, tmp_path):
    log = io.StringIO()
    config = Pix2PixConfig(
        **{**P2P, "n_epochs": 1, "n_epochs_decay": 0, "norm": "batch"},
        data=str(shapes),
        out=str(tmp_path / "run"),
        sync_bn=True,
    )
    train_pix2pix(config, stream=log)
    assert "note: --sync-bn: a single process, so plain batch norm" in log.getvalue()


def test_the_root_cause_of_a_failed_job():
    """What `--nproc` reports: a process killed by a signal, else the first that exited with its
    own code (it said why); SIGTERM is torchrun stopping the others."""
    from types import SimpleNamespace as Failure

    killed = distributed.root_cause({0: Failure(exitcode=1, timestamp=1), 1: Failure(exitcode=-9, timestamp=2)})
    assert (killed[0], killed[2]) == (1, True)
    said = distributed.root_cause({0: Failure(exitcode=-15, timestamp=1), 1: Failure(exitcode=2, timestamp=2)})
    assert (said[0], said[1].exitcode, said[2]) == (1, 2, False)
    stopped = distributed.root_cause({0: Failure(exitcode=-15, timestamp=3), 1: Failure(exitcode=-15, timestamp=2)})
    assert (stopped[0], stopped[2]) == (1, True)
