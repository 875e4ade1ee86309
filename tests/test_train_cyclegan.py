"""`train cyclegan` end to end: unpaired data and its check, the image pool, it learns a known
mapping, resumes bit for bit (image pools included), exports two weights files that `translate`
runs in both directions, and behaves as a command. The shared infrastructure (signals,
progress, run folder rules) is tested with pix2pix."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from img2img.cli import main
from img2img.data import Preprocess, UnpairedDataset, check_unpaired_data, list_images, load_image, to_tensor
from img2img.data.synthetic import PALETTES, write_palette_dataset
from img2img.errors import DatasetError, TrainingInterrupted, UsageError
from img2img.models.weights import load_generator, read_metadata
from img2img.train import CycleGANModel, ImagePool, train_cyclegan
from img2img.train.config import CycleGANConfig

TINY = dict(
    netg="resnet_1blocks",
    ngf=8,
    ndf=8,
    preprocess="resize_and_crop",
    load_size=36,
    crop_size=32,
    n_epochs=1,
    n_epochs_decay=1,
    seed=0,
    print_freq=4,
    val_size=2,
    n_samples=2,
    pool_size=3,
)
TINY_FLAGS = [
    "--netg",
    "resnet_1blocks",
    "--ngf",
    "8",
    "--ndf",
    "8",
    "--load-size",
    "36",
    "--crop-size",
    "32",
    "--seed",
    "0",
    "--val-size",
    "2",
    "--n-samples",
    "2",
    "--pool-size",
    "3",
]
LOSSES = ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These networks are tiny: one thread is faster, and much faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def palettes(tmp_path_factory) -> Path:
    """8 trainA and 6 trainB images (so B is drawn at random, epochs of 8), 2 + 2 test images."""
    return write_palette_dataset(tmp_path_factory.mktemp("data") / "palettes", n_a=8, n_b=6, n_test=2, size=32)


def tiny(data: Path, out: Path, **changes) -> CycleGANConfig:
    return CycleGANConfig(**{**TINY, "data": str(data), "out": str(out), **changes})


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def run_tensors(run: Path) -> dict[str, torch.Tensor]:
    """Both exported generators and the latest checkpoint (networks, optimizers, image pools)
    except the global RNG states."""
    tensors = {}
    for direction in ("AtoB", "BtoA"):
        for key, value in load_file(run / "weights" / f"cyclegan_{direction}.safetensors").items():
            tensors[f"{direction}/{key}"] = value
    for key, value in load_file(run / "checkpoints" / "latest.safetensors").items():
        if not key.startswith("s/rng"):
            tensors[key] = value
    return tensors


def _run_main(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


# --- it must learn ----------------------------------------------------------------------------------


def _images(folder: Path) -> list[torch.Tensor]:
    return [to_tensor(load_image(path, 3)).unsqueeze(0) for path in list_images(folder)]


def test_cyclegan_learns_a_known_recolouring(tmp_path):
    """Two unpaired domains, the same kind of scene in two colour schemes (64x64); testB/N is the
    true translation of testA/N. After a few hundred iterations G_A's outputs must be much closer
    to the true counterparts than the inputs are, clearly better than painting everything in B's
    background colour, and the cycle must bring the inputs back."""
    data = write_palette_dataset(tmp_path / "palettes", n_a=48, n_b=40, n_test=8, size=64, seed=0)
    config = CycleGANConfig(
        data=str(data),
        out=str(tmp_path / "run"),
        netg="resnet_2blocks",
        ngf=16,
        ndf=16,
        preprocess="none",
        load_size=64,
        crop_size=64,
        lr=5e-4,
        n_epochs=3,
        n_epochs_decay=3,
        seed=0,
        print_freq=1000,
        val_size=8,
        amp=False,
        channels_last=False,
    )
    result = train_cyclegan(config, stream=io.StringIO())
    assert result.iterations == 6 * 48  # epochs as long as the larger domain

    g_a = load_generator(result.weights["AtoB"]).net
    g_b = load_generator(result.weights["BtoA"]).net
    real_a, true_b = _images(data / "testA"), _images(data / "testB")
    background_b = torch.tensor(PALETTES["B"]["background"]).float().div(127.5).sub(1).view(1, 3, 1, 1)
    with torch.no_grad():
        translated = [g_a(a) for a in real_a]
        error = sum(float((t - b).abs().mean()) for t, b in zip(translated, true_b)) / len(real_a)
        cycle = sum(float((g_b(t) - a).abs().mean()) for t, a in zip(translated, real_a)) / len(real_a)
    untranslated = sum(float((a - b).abs().mean()) for a, b in zip(real_a, true_b)) / len(real_a)
    flat = sum(float((background_b - b).abs().mean()) for b in true_b) / len(true_b)
    assert error < 0.2 * untranslated, (error, untranslated)
    assert error < 0.7 * flat, (error, flat)
    assert cycle < 0.15, cycle
    assert result.val_metrics["val_cycle_A"] == pytest.approx(cycle, rel=1e-4)
    assert result.val_metrics["val_cycle_B"] < 0.15


# --- the image pool ------------------------------------------------------------------------------------


def test_image_pool_is_the_references():
    images = torch.arange(6.0).view(6, 1, 1, 1)
    assert torch.equal(ImagePool(0, seed=0).query(images), images)

    pool = ImagePool(3, seed=0)
    assert torch.equal(pool.query(images[:2]), images[:2])  # filling: stored and returned
    assert torch.equal(pool.query(images[2:3]), images[2:3])
    assert [float(x) for x in pool.images] == [0, 1, 2]
    returned_new = returned_old = 0
    for value in range(3, 200):
        before = [float(x) for x in pool.images]
        out = float(pool.query(torch.tensor(float(value)).view(1, 1, 1, 1)))
        after = [float(x) for x in pool.images]
        if out == value:  # the new image, pool unchanged
            returned_new += 1
            assert after == before
        else:  # a stored image, replaced by the new one
            returned_old += 1
            assert out in before and after.count(value) == 1 and out not in after
    assert 60 < returned_new < 140 and 60 < returned_old < 140  # probability 1/2

    # its state (images and random generator) continues exactly where it was
    state = pool.state_dict()
    twin = ImagePool(3, seed=123)
    twin.load_state_dict(state)
    for value in range(200, 220):
        image = torch.tensor(float(value)).view(1, 1, 1, 1)
        assert torch.equal(pool.query(image), twin.query(image))


# --- resume -----------------------------------------------------------------------------------------


def test_resume_is_bit_identical_including_the_pools(palettes, tmp_path):
    """2 epochs in one run == 1 epoch, then --resume, then 1 more (pools full by then)."""
    full = train_cyclegan(tiny(palettes, tmp_path / "full"), stream=io.StringIO())
    first = train_cyclegan(tiny(palettes, tmp_path / "split"), stream=io.StringIO(), stop_after_epochs=1)
    assert first.epochs == 1
    latest = load_file(tmp_path / "split" / "checkpoints" / "latest.safetensors")
    assert {f"s/extra/fake_{d}_pool/images/{i}" for d in "AB" for i in range(3)} <= set(latest)
    resumed = train_cyclegan(tiny(palettes, tmp_path / "split"), resume=True, stream=io.StringIO())
    assert resumed.epochs == full.epochs == 2 and resumed.iterations == full.iterations == 16
    assert_same_tensors(run_tensors(tmp_path / "full"), run_tensors(tmp_path / "split"))


def test_interrupt_mid_epoch_then_resume_is_bit_identical(palettes, tmp_path, monkeypatch):
    train_cyclegan(tiny(palettes, tmp_path / "full"), stream=io.StringIO())
    real_step = CycleGANModel.train_step
    calls = {"n": 0}

    def step_then_signal(self, batch):
        calls["n"] += 1
        if calls["n"] == 11:
            signal.raise_signal(signal.SIGTERM)  # handled now, during iteration 11
        return real_step(self, batch)

    monkeypatch.setattr(CycleGANModel, "train_step", step_then_signal)
    with pytest.raises(TrainingInterrupted) as info:
        train_cyclegan(tiny(palettes, tmp_path / "split"), stream=io.StringIO())
    assert info.value.exit_code == 143
    assert f"img2img train cyclegan --resume {tmp_path / 'split'}" in str(info.value)
    monkeypatch.setattr(CycleGANModel, "train_step", real_step)
    code = _run_main(["train", "cyclegan", "--resume", str(tmp_path / "split")])
    assert code == 0
    assert_same_tensors(run_tensors(tmp_path / "full"), run_tensors(tmp_path / "split"))
    rows = list(csv.DictReader(open(tmp_path / "split" / "metrics.csv")))
    assert [int(r["iteration"]) for r in rows if r["scope"] == "epoch"] == [8, 16]


# --- the run folder, metrics, samples, exports -----------------------------------------------------------


def test_run_folder_metrics_samples_and_exports(palettes, tmp_path):
    run = tmp_path / "run"
    log = io.StringIO()
    result = train_cyclegan(tiny(palettes, run), stream=log)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert list(rows[0])[5:] == [*LOSSES, "val_cycle_A", "val_cycle_B"]
    assert [r["scope"] for r in rows] == ["iter", "iter", "epoch", "iter", "iter", "epoch"]
    assert all(float(r[name]) >= 0 for r in rows for name in LOSSES)
    assert all(
        0 < float(r["val_cycle_A"]) < 2 and 0 < float(r["val_cycle_B"]) < 2 for r in rows if r["scope"] == "epoch"
    )

    with Image.open(run / "samples" / "epoch_002.png") as grid:
        # 2 fixed images: real_A | fake_B | rec_A and real_B | fake_A | rec_B for each
        assert grid.size == (2 + 3 * (32 + 2), 2 + 4 * (32 + 2))

    assert result.weights == {
        "AtoB": run / "weights" / "cyclegan_AtoB.safetensors",
        "BtoA": run / "weights" / "cyclegan_BtoA.safetensors",
    }
    for direction, path in result.weights.items():
        meta = read_metadata(path)
        assert (meta.task, meta.direction, meta.eval_mode) == ("cyclegan", direction, True)
        assert meta.generator.reference_name == "resnet_1blocks" and meta.generator.norm == "instance"
        assert meta.preprocess["crop_size"] == 32
        net = load_generator(path).net
        with torch.no_grad():
            assert net(torch.rand(1, 3, 32, 32) * 2 - 1).shape == (1, 3, 32, 32)
    config = json.loads((run / "config.json").read_text())
    assert (config["task"], config["netg"], config["gan_mode"], config["pool_size"]) == (
        "cyclegan",
        "resnet_1blocks",
        "lsgan",
        3,
    )
    text = log.getvalue()
    assert "8 trainA/ and 6 trainB/ images (unpaired); validation: 2 + 2 from testA/ + testB/" in text
    assert "finished: cyclegan, 2 epochs, 16 iterations" in text
    assert f"weights (AtoB): {result.weights['AtoB']}" in text and f"weights (BtoA): {result.weights['BtoA']}" in text


def test_translate_both_directions_with_the_exports(palettes, tmp_path):
    run = tmp_path / "run"
    result = train_cyclegan(tiny(palettes, run, n_epochs_decay=0), stream=io.StringIO())
    image = tmp_path / "in.png"
    Image.open(list_images(palettes / "testA")[0]).resize((40, 28)).save(image)
    assert (
        _run_main(
            ["translate", str(image), "--model", str(result.weights["AtoB"]), "-o", str(tmp_path / "b.png"), "--quiet"]
        )
        == 0
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "img2img",
            "translate",
            str(image),
            "--model",
            str(result.weights["BtoA"]),
            "--direction",
            "BtoA",
            "-o",
            str(tmp_path / "a.png"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,  # a hang guard
    )
    assert done.returncode == 0, done.stderr
    for name in ("a.png", "b.png"):
        with Image.open(tmp_path / name) as out:
            assert out.size == (40, 28) and out.mode == "RGB"


def test_direction_btoa_grayscale_domain_and_the_warnings(tmp_path):
    """--direction BtoA trains G_A from trainB/ to trainA/; a grayscale domain with --input-nc 1
    (identity off: it needs equal channels); domains of very different sizes are warned about."""
    data = tmp_path / "data"
    for index in range(4):
        (data / "trainA").mkdir(parents=True, exist_ok=True)
        (data / "trainB").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (200, 10 * index, 30)).save(data / "trainA" / f"{index}.png")
        Image.new("L", (80, 80), 20 * index).save(data / "trainB" / f"{index}.png")
    log = io.StringIO()
    config = tiny(data, tmp_path / "run", direction="BtoA", input_nc=1, lambda_identity=0, n_epochs_decay=0)
    result = train_cyclegan(config, stream=log)
    text = log.getvalue()
    assert "warning: trainB/ holds grayscale images and trainA/ colour ones" in text
    assert "warning: trainA/ images are typically 32x32 and trainB/ ones 80x80" in text
    assert "direction BtoA: G_A maps trainB/ to trainA/" in text
    forward, back = read_metadata(result.weights["BtoA"]), read_metadata(result.weights["AtoB"])
    assert (forward.generator.input_nc, forward.generator.output_nc) == (1, 3)
    assert (back.generator.input_nc, back.generator.output_nc) == (3, 1)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert {float(r["idt_A"]) for r in rows} == {0.0}


@pytest.mark.parametrize(
    "changes",
    [
        dict(gan_mode="vanilla", pool_size=0),
        dict(gan_mode="wgangp", norm="batch", dropout=True),
        dict(batch_size=2, amp=False),
    ],
    ids=["vanilla-no-pool", "wgangp-batchnorm-dropout", "batch2-fp32"],
)
def test_options_train(palettes, tmp_path, changes):
    result = train_cyclegan(tiny(palettes, tmp_path / "run", n_epochs_decay=0, **changes), stream=io.StringIO())
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert all(torch.isfinite(torch.tensor([float(r[k]) for r in rows for k in LOSSES])))
    assert read_metadata(result.weights["AtoB"]).eval_mode == (changes.get("norm") != "batch")


# --- unpaired data ---------------------------------------------------------------------------------------


def _domains(root: Path, n_a: int, n_b: int, size: int = 8) -> Path:
    for name, count in (("trainA", n_a), ("trainB", n_b)):
        (root / name).mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (size, size), (index, 0, 0) if name == "trainA" else (0, 0, index)).save(
                root / name / f"{index}.png"
            )
    return root


def test_unpaired_dataset_is_the_references_unaligned_one(tmp_path):
    root = _domains(tmp_path / "d", 3, 5)
    pre = Preprocess("none", 8, 8, flip=False)
    found = check_unpaired_data(root, pre, val_size=0)
    dataset = UnpairedDataset(found.train_a, found.train_b, pre)
    assert len(dataset) == 5  # the larger domain
    assert [Path(dataset[(i, 7)]["A_path"]).name for i in range(5)] == ["0.png", "1.png", "2.png", "0.png", "1.png"]
    drawn = {dataset[(0, seed)]["B_path"] for seed in range(40)}
    assert len(drawn) == 5  # B drawn at random, by the sample's seed
    assert dataset[(1, 3)]["B_path"] == dataset[(1, 3)]["B_path"]
    serial = UnpairedDataset(found.train_a, found.train_b, pre, serial=True)
    assert [Path(serial[(i, 99)]["B_path"]).name for i in range(5)] == [f"{i}.png" for i in range(5)]
    item = dataset[(0, 0)]
    assert item["A"].shape == item["B"].shape == (3, 8, 8)

    # no testA/testB: a fixed slice of each domain (10 or more) is held out
    many = _domains(tmp_path / "many", 20, 12)
    found = check_unpaired_data(many, pre)
    assert (len(found.train_a), len(found.val_a), len(found.train_b), len(found.val_b)) == (18, 2, 11, 1)
    assert found.val_source == "held-out" and not set(found.val_a) & set(found.train_a)


def test_serial_batches_takes_images_in_order(palettes, tmp_path):
    from img2img.train import Trainer, cyclegan_data

    trainer = Trainer(
        tiny(palettes, tmp_path / "run", serial_batches=True), CycleGANModel, cyclegan_data, stream=io.StringIO()
    )
    trainer._prepare()
    batches = list(trainer.loader)
    assert [Path(b["A_path"][0]).name for b in batches] == [f"{i:04d}.png" for i in range(8)]
    assert [Path(b["B_path"][0]).name for b in batches] == [f"{i % 6:04d}.png" for i in range(8)]


def _broken(kind: str, root: Path) -> list[str]:
    if kind == "missing folder":
        return ["no such folder"]
    if kind == "paired layout":
        (root / "train").mkdir(parents=True)
        return ["no trainA/ or trainB/ folder", "train/ is the paired layout of `img2img train pix2pix`"]
    if kind == "no trainB":
        _domains(root, 2, 0)
        (root / "trainB").rmdir()
        return ["no trainB/ folder", "found trainA/"]
    if kind == "empty trainA":
        _domains(root, 0, 2)
        (root / "trainA" / "notes.txt").write_text("hi")
        return ["trainA: no images", "notes.txt"]
    if kind == "unreadable images":
        _domains(root, 2, 2)
        (root / "trainA" / "bad.jpg").write_bytes(b"not a jpeg at all")
        (root / "trainB" / "empty.png").write_bytes(b"")
        return ["unreadable images", "trainA/bad.jpg", "trainB/empty.png"]
    if kind == "unreadable test image":
        _domains(root, 2, 2)
        for name in ("testA", "testB"):
            (root / name).mkdir()
            Image.new("RGB", (8, 8)).save(root / name / "0.png")
        (root / "testB" / "1.png").write_bytes(b"\x89PNG broken")
        return ["unreadable images", "testB/1.png"]
    if kind == "image smaller than crop":
        _domains(root, 2, 2)
        Image.new("RGB", (4, 4)).save(root / "trainB" / "small.png")
        return ["smaller than --crop-size 8", "trainB/small.png"]
    raise AssertionError(kind)


BROKEN = [
    "missing folder",
    "paired layout",
    "no trainB",
    "empty trainA",
    "unreadable images",
    "unreadable test image",
    "image smaller than crop",
]


@pytest.mark.parametrize("kind", BROKEN)
def test_cli_broken_dataset_exits_1_and_writes_nothing(tmp_path, monkeypatch, capsys, kind):
    root = tmp_path / "data"
    needles = _broken(kind, root)
    monkeypatch.chdir(tmp_path)
    code = _run_main(
        ["train", "cyclegan", "--data", str(root), "--preprocess", "crop", "--load-size", "8", "--crop-size", "8"]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("img2img: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "runs").exists()


def test_cli_usage_errors(palettes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert _run_main(["train", "cyclegan", "--data", str(palettes), "--input-nc", "1"]) == 2
    err = capsys.readouterr().err
    assert "--lambda-identity 0.5 compares G_A(B) with B" in err and "--lambda-identity 0" in err
    assert _run_main(["train", "cyclegan", "--data", str(palettes), "--pool-size", "-1"]) == 2
    assert _run_main(["train", "cyclegan"]) == 2
    assert not (tmp_path / "runs").exists()
    with pytest.raises(UsageError):
        CycleGANConfig(data="x", lambda_a=-1)
    with pytest.raises(DatasetError):
        check_unpaired_data(tmp_path / "nothing", Preprocess())


def test_cli_trains_with_the_shared_options_and_resumes(palettes, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [
        "train",
        "cyclegan",
        "--data",
        str(palettes),
        *TINY_FLAGS,
        "--n-epochs",
        "1",
        "--n-epochs-decay",
        "0",
        "--no-flip",
    ]
    assert _run_main(args) == 0
    run = tmp_path / "runs" / "palettes_cyclegan"
    config = json.loads((run / "config.json").read_text())
    assert (config["flip"], config["pool_size"], config["netg"], config["dropout"]) == (
        False,
        3,
        "resnet_1blocks",
        False,
    )
    capsys.readouterr()
    assert _run_main(["train", "cyclegan", "--resume", str(run), "--n-epochs-decay", "1", "--lambda-a", "5"]) == 2
    assert "--lambda-a cannot change" in capsys.readouterr().err
    assert _run_main(["train", "pix2pix", "--resume", str(run)]) == 2  # not a pix2pix run
    assert "cyclegan config, not a pix2pix one" in capsys.readouterr().err
    assert _run_main(["train", "cyclegan", "--resume", str(run), "--n-epochs-decay", "1"]) == 0
    assert "finished: cyclegan, 2 epochs" in capsys.readouterr().err


def test_cli_defaults_match_the_config_and_options_are_shared():
    """The defaults shown in --help are the ones CycleGANConfig applies, and every option the
    two trainers share is the same option (flags, help) in both commands."""
    import typer.main

    from img2img.cli._app import app

    commands = typer.main.get_command(app).commands["train"].commands
    config = CycleGANConfig(data="x")
    renamed = {"no_flip": ("flip", lambda v: not v)}
    for param in commands["cyclegan"].params:
        if param.name in ("data", "out", "resume", "config_file", "overwrite", "nproc", "max_pixels", "help"):
            continue
        field, convert = renamed.get(param.name, (param.name, lambda v: v))
        default = param.default.value if hasattr(param.default, "value") else param.default
        assert convert(default) == getattr(config, field), param.name
    pix2pix = {p.name: p for p in commands["pix2pix"].params}
    cyclegan = {p.name: p for p in commands["cyclegan"].params}
    shared = set(pix2pix) & set(cyclegan) - {"data"}
    assert len(shared) > 40
    for name in shared:
        assert (pix2pix[name].opts, pix2pix[name].secondary_opts, pix2pix[name].help) == (
            cyclegan[name].opts,
            cyclegan[name].secondary_opts,
            cyclegan[name].help,
        ), name
    assert set(cyclegan) - set(pix2pix) == {"lambda_a", "lambda_b", "lambda_identity", "pool_size"}
