"""Datasets, transforms, the up-front dataset check (a corpus of broken datasets) and `data combine`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.cli import main
from img2img.data import EpochSampler, PairedDataset, Preprocess, check_paired_data, combine_folders
from img2img.data.synthetic import write_shapes_dataset
from img2img.errors import DatasetError

RED, BLUE = (255, 0, 0), (0, 0, 255)


def solid(size: tuple[int, int], colour, mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def aligned_image(path: Path, a: Image.Image, b: Image.Image) -> Path:
    both = Image.new("RGB", (a.width + b.width, a.height))
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    both.save(path)
    return path


def noise(size: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


NO_RESIZE = Preprocess("none", 32, 32, flip=False)


# --- layouts --------------------------------------------------------------------------------------


def test_aligned_layout_splits_a_and_b(tmp_path):
    for i in range(3):
        aligned_image(tmp_path / "d" / "train" / f"{i}.png", solid((32, 32), RED), solid((32, 32), BLUE))
    found = check_paired_data(tmp_path / "d", NO_RESIZE)
    assert found.layout == "aligned" and len(found.train) == 3
    assert found.val_source == "train"  # too few to hold any out
    item = PairedDataset(found.train, NO_RESIZE)[0]
    assert item["input"].shape == (3, 32, 32) and item["target"].shape == (3, 32, 32)
    assert torch.allclose(item["input"][:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    assert torch.allclose(item["target"][:, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))
    reverse = PairedDataset(found.train, NO_RESIZE, direction="BtoA")[0]
    assert torch.equal(reverse["input"], item["target"]) and torch.equal(reverse["target"], item["input"])


def test_two_folder_layout_pairs_by_name(tmp_path):
    root = tmp_path / "d"
    for name, ext_b in (("x", ".png"), ("y", ".jpg")):
        (root / "train" / "A").mkdir(parents=True, exist_ok=True)
        (root / "train" / "B").mkdir(parents=True, exist_ok=True)
        solid((32, 32), RED).save(root / "train" / "A" / f"{name}.png")
        solid((32, 32), BLUE).save(root / "train" / "B" / f"{name}{ext_b}")
    found = check_paired_data(root, NO_RESIZE)
    assert found.layout == "two-folder"
    assert [(p.a.name, p.b.name) for p in found.train] == [("x.png", "x.png"), ("y.png", "y.jpg")]
    item = PairedDataset(found.train, NO_RESIZE)[1]
    assert item["input"][0].mean() > 0.9 and item["target"][2].mean() > 0.9


def test_val_split_is_used_and_else_a_slice_of_train_is_held_out(tmp_path):
    with_val = write_shapes_dataset(tmp_path / "a", n_train=12, n_val=3, size=32)
    found = check_paired_data(with_val, NO_RESIZE)
    assert (len(found.train), len(found.val), found.val_source) == (12, 3, "val")
    without = write_shapes_dataset(tmp_path / "b", n_train=30, n_val=0, size=32)
    found = check_paired_data(without, NO_RESIZE)
    assert found.val_source == "held-out" and len(found.val) == 3 and len(found.train) == 27
    assert not {p.a for p in found.val} & {p.a for p in found.train}
    assert check_paired_data(without, NO_RESIZE).val == found.val  # the same split every time


def test_grayscale_channels(tmp_path):
    root = write_shapes_dataset(tmp_path / "d", n_train=2, n_val=0, size=32)
    found = check_paired_data(root, NO_RESIZE)
    item = PairedDataset(found.train, NO_RESIZE, input_nc=1, output_nc=3)[0]
    assert item["input"].shape == (1, 32, 32) and item["target"].shape == (3, 32, 32)
    item = PairedDataset(found.train, NO_RESIZE, direction="BtoA", input_nc=3, output_nc=1)[0]
    assert item["input"].shape == (3, 32, 32) and item["target"].shape == (1, 32, 32)


# --- preprocessing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, size, expected",
    [
        ("resize_and_crop", (40, 30), (16, 16)),
        ("crop", (40, 30), (16, 16)),
        ("scale_width", (40, 30), (24, 18)),
        ("scale_width_and_crop", (40, 30), (16, 16)),
        ("none", (46, 30), (48, 32)),  # rounded as the reference does (Python round)
    ],
)
def test_preprocess_output_sizes(tmp_path, mode, size, expected):
    pre = Preprocess(mode, load_size=24, crop_size=16, flip=True)
    assert pre.output_size(*size) == expected
    path = aligned_image(tmp_path / "train" / "0.png", noise(1, 0).resize(size), noise(1, 1).resize(size))
    found = check_paired_data(tmp_path, pre)
    item = PairedDataset(found.train, pre)[(0, 123)]
    assert tuple(item["input"].shape[1:]) == (expected[1], expected[0])
    assert path.exists()


def test_the_same_crop_and_flip_go_to_a_and_b(tmp_path):
    image = noise(64, 0)
    for i in range(4):
        aligned_image(tmp_path / "train" / f"{i}.png", image, image)
    pre = Preprocess("resize_and_crop", load_size=72, crop_size=48, flip=True)
    dataset = PairedDataset(check_paired_data(tmp_path, pre).train, pre)
    crops = set()
    for seed in range(12):
        item = dataset[(0, seed)]
        assert torch.equal(item["input"], item["target"])
        crops.add(item["input"].sum().item())
    assert len(crops) > 6  # the crops and flips really vary with the seed
    assert torch.equal(dataset[(0, 5)]["input"], dataset[(0, 5)]["input"])  # and repeat with it


def test_transforms_leave_the_global_rng_alone(tmp_path):
    root = write_shapes_dataset(tmp_path / "d", n_train=2, n_val=0, size=32)
    pre = Preprocess("resize_and_crop", 40, 32)
    dataset = PairedDataset(check_paired_data(root, pre).train, pre)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    dataset[(0, 99)]
    assert torch.equal(torch.rand(3), expected)


def test_epoch_sampler_is_seeded_per_epoch_and_resumable():
    sampler = EpochSampler(10, seed=1)
    sampler.set_epoch(0)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(10))
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0, start=4)
    assert list(sampler) == first[4:] and len(sampler) == 6
    shards = [EpochSampler(10, seed=1, rank=r, world_size=3) for r in range(3)]
    seen = [i for s in shards for i, _ in s]
    assert len(seen) == 12 and set(seen) == set(range(10))


# --- the dataset check: a corpus of broken datasets -------------------------------------------------


def _broken(kind: str, root: Path) -> tuple[Preprocess, list[str]]:
    """Make a broken dataset of ``kind``; return the preprocessing and what the error must say."""
    pre = Preprocess("resize_and_crop", 286, 256)
    train = root / "train"
    if kind == "missing folder":
        return pre, [str(root), "no such folder"]
    root.mkdir(parents=True)
    if kind == "no train folder":
        (root / "photos").mkdir()
        return pre, ["no train/ folder", "photos/", "expected"]
    if kind == "unpaired layout":
        (root / "trainA").mkdir()
        (root / "trainB").mkdir()
        return pre, ["no train/ folder", "trainA/", "expected"]
    train.mkdir()
    if kind == "empty train":
        (train / "notes.txt").write_text("hi")
        return pre, ["train: no images", "notes.txt"]
    if kind == "images and A/":
        aligned_image(train / "0.png", solid((8, 8), RED), solid((8, 8), BLUE))
        (train / "A").mkdir()
        return pre, ["unknown layout", "train"]
    if kind == "A without B":
        (train / "A").mkdir()
        solid((8, 8), RED).save(train / "A" / "x.png")
        return pre, ["has A/ but no B/"]
    if kind == "empty B":
        (train / "A").mkdir()
        (train / "B").mkdir()
        solid((8, 8), RED).save(train / "A" / "x.png")
        return pre, ["B: no images"]
    if kind == "unpaired names":
        (train / "A").mkdir()
        (train / "B").mkdir()
        solid((8, 8), RED).save(train / "A" / "x.png")
        solid((8, 8), RED).save(train / "B" / "y.png")
        return pre, ["unpaired", "x.png", "y.png"]
    if kind == "unreadable image":
        aligned_image(train / "good.png", solid((8, 8), RED), solid((8, 8), BLUE))
        (train / "bad.jpg").write_bytes(b"not a jpeg at all")
        (train / "empty.png").write_bytes(b"")
        return Preprocess("none", 8, 8), ["unreadable", "train/bad.jpg", "train/empty.png"]
    if kind == "odd width":
        solid((65, 32), RED).save(train / "odd.png")
        return Preprocess("none", 32, 32), ["odd width", "train/odd.png", "65x32"]
    if kind == "A and B sizes differ":
        (train / "A").mkdir()
        (train / "B").mkdir()
        solid((32, 32), RED).save(train / "A" / "x.png")
        solid((32, 40), RED).save(train / "B" / "x.png")
        return Preprocess("none", 32, 32), ["different sizes", "train/A/x.png", "train/B/x.png"]
    if kind == "crop larger than load":
        aligned_image(train / "0.png", solid((8, 8), RED), solid((8, 8), BLUE))
        return Preprocess("resize_and_crop", 200, 256), ["--crop-size 256", "--load-size 200"]
    if kind == "image smaller than crop":
        aligned_image(train / "small.png", solid((100, 100), RED), solid((100, 100), BLUE))
        return Preprocess("crop", 286, 256), ["smaller than --crop-size 256", "train/small.png"]
    if kind == "bad val image":
        aligned_image(train / "0.png", solid((8, 8), RED), solid((8, 8), BLUE))
        (root / "val").mkdir()
        (root / "val" / "v.png").write_bytes(b"\x89PNG broken")
        return Preprocess("none", 8, 8), ["unreadable", "val/v.png"]
    raise AssertionError(kind)


BROKEN = [
    "missing folder",
    "no train folder",
    "unpaired layout",
    "empty train",
    "images and A/",
    "A without B",
    "empty B",
    "unpaired names",
    "unreadable image",
    "odd width",
    "A and B sizes differ",
    "crop larger than load",
    "image smaller than crop",
    "bad val image",
]


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_dataset_gives_one_error_naming_the_files(tmp_path, kind):
    root = tmp_path / "data"
    pre, needles = _broken(kind, root)
    with pytest.raises(DatasetError) as info:
        check_paired_data(root, pre)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_generator_size_is_checked(tmp_path):
    aligned_image(tmp_path / "train" / "0.png", solid((96, 64), RED), solid((96, 64), BLUE))
    with pytest.raises(DatasetError, match="multiples of 64.*train/0.png"):
        check_paired_data(tmp_path, Preprocess("none", 64, 64), size_multiple=64)
    with pytest.raises(DatasetError, match="--crop-size 64 does not suit"):
        check_paired_data(tmp_path, Preprocess("crop", 64, 64), size_multiple=256)


@pytest.mark.parametrize("kind", ["unreadable image", "odd width", "no train folder", "crop larger than load"])
def test_cli_broken_dataset_exits_1_and_writes_nothing(tmp_path, monkeypatch, capsys, kind):
    root = tmp_path / "data"
    pre, needles = _broken(kind, root)
    monkeypatch.chdir(tmp_path)
    args = [
        "train",
        "pix2pix",
        "--data",
        str(root),
        "--preprocess",
        pre.mode,
        "--load-size",
        str(pre.load_size),
        "--crop-size",
        str(pre.crop_size),
        "--netg",
        "unet_32",
    ]
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("img2img: error: ") and err.count("\n") == 1
    assert needles[0] in err
    assert sorted(p for p in tmp_path.rglob("*")) == before  # no run folder, nothing at all


# --- data combine ------------------------------------------------------------------------------------


def test_combine_builds_the_aligned_layout(tmp_path):
    for split in ("train", "val"):
        for name in ("1", "2"):
            (tmp_path / "A" / split).mkdir(parents=True, exist_ok=True)
            (tmp_path / "B" / split).mkdir(parents=True, exist_ok=True)
            solid((16, 12), RED).save(tmp_path / "A" / split / f"{name}.png")
            solid((16, 12), BLUE).save(tmp_path / "B" / split / f"{name}.png")
    written = combine_folders(tmp_path / "A", tmp_path / "B", tmp_path / "AB")
    assert sorted(p.relative_to(tmp_path / "AB").as_posix() for p in written) == [
        "train/1.png",
        "train/2.png",
        "val/1.png",
        "val/2.png",
    ]
    with Image.open(tmp_path / "AB" / "train" / "1.png") as image:
        assert image.size == (32, 12)
        assert image.getpixel((0, 0)) == RED and image.getpixel((31, 11)) == BLUE
    found = check_paired_data(tmp_path / "AB", Preprocess("none", 16, 16))
    assert found.layout == "aligned" and len(found.train) == 2 and found.val_source == "val"
    with pytest.raises(DatasetError, match="already exist"):
        combine_folders(tmp_path / "A", tmp_path / "B", tmp_path / "AB")
    combine_folders(tmp_path / "A", tmp_path / "B", tmp_path / "AB", overwrite=True)


def test_combine_writes_the_pairs_it_can_and_pairs_names_first(tmp_path, capsys):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    solid((16, 16), RED).save(tmp_path / "A" / "1.png")
    solid((16, 16), BLUE).save(tmp_path / "B" / "1.png")
    solid((16, 16), RED).save(tmp_path / "A" / "2.png")
    solid((20, 16), BLUE).save(tmp_path / "B" / "2.png")
    with pytest.raises(SystemExit) as info:
        main(["data", "combine", str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "AB")])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert f"img2img: error: {tmp_path}/A/2.png: A and B of different sizes (16x16 and 20x16" in err
    assert sorted(p.name for p in (tmp_path / "AB").iterdir()) == ["1.png"]  # the other pair is written
    (tmp_path / "B" / "2.png").unlink()
    with pytest.raises(SystemExit):
        main(["data", "combine", str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "AB2")])
    err = capsys.readouterr().err
    assert "without a partner" in err and "2.png" in err
    assert not (tmp_path / "AB2").exists()  # pairing is checked before anything is written


def test_combine_cli(tmp_path, capsys):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    solid((16, 16), 200, "L").save(tmp_path / "A" / "1.jpg")
    solid((16, 16), BLUE).save(tmp_path / "B" / "1.png")
    main_exit = None
    try:
        main(["data", "combine", str(tmp_path / "A"), str(tmp_path / "B"), str(tmp_path / "AB")])
    except SystemExit as exc:
        main_exit = exc.code
    assert main_exit in (None, 0)
    assert "wrote 1" in capsys.readouterr().err
    with Image.open(tmp_path / "AB" / "1.jpg") as image:
        assert image.size == (32, 16) and image.mode == "RGB"
