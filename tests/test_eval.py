"""img2img eval: scores against the libraries computed independently, the feature cache, the
weights lookup, paired metrics against known values, and the command's forms and errors.

Everything runs offline on an Inception with the standard file's key names and shapes and
random weights, and on a random torchvision AlexNet for LPIPS. The Inception runs at 299x299
on the CPU (about a second an image on a loaded machine), so the image sets are tiny.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.cli import main
from img2img.errors import DownloadError, UsageError, WeightsError

N = 5  # images per set


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: several times faster than two on a machine busy with other work (the two
    wait for each other), and these networks are run on a handful of images."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_inception(seed: int = 0) -> dict[str, torch.Tensor]:
    """The standard layout with He-initialised convolutions: PyTorch's default init makes the
    activations vanish into denormals over 90-odd layers, which is slow and meaningless."""
    from img2img.eval.inception import standard_layout

    generator = torch.Generator().manual_seed(seed)
    tensors = standard_layout()
    for key, value in tensors.items():
        if key.endswith("conv.weight"):
            tensors[key] = torch.randn(value.shape, generator=generator) * math.sqrt(2 / value[0].numel())
        elif key == "fc.weight":
            tensors[key] = torch.randn(value.shape, generator=generator) * 0.05
    return tensors


def _smooth_images(rng: np.random.Generator, count: int, size=(40, 48)) -> list[np.ndarray]:
    """Low-frequency colour images (blurry blobs), uint8 (H, W, 3)."""
    out = []
    for _ in range(count):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        out.append(np.asarray(Image.fromarray(small).resize((size[1], size[0]), Image.BICUBIC)))
    return out


def _write(folder: Path, images: list[np.ndarray], ext: str = "png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, pixels in enumerate(images):
        Image.fromarray(pixels).save(folder / f"{i}.{ext}")
    return folder


def _noisy(images: list[np.ndarray], sigma: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(x + rng.normal(0, sigma, x.shape), 0, 255).astype(np.uint8) for x in images]


@pytest.fixture(scope="session")
def eval_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval")
    torch.save(_random_inception(), root / "inception.pth")
    torch.manual_seed(0)
    import torchvision

    torch.save(torchvision.models.alexnet(weights=None).state_dict(), root / "alexnet.pth")
    rng = np.random.default_rng(0)
    real = _smooth_images(rng, N)
    other = _smooth_images(rng, N)
    return {
        "root": root,
        "inception": root / "inception.pth",
        "alexnet": root / "alexnet.pth",
        "real": _write(root / "real", real),
        "fake": _write(root / "fake", other),
        "noisy_small": _write(root / "noisy_small", _noisy(real, 8, 1)),
        "noisy_large": _write(root / "noisy_large", _noisy(real, 40, 2)),
    }


@pytest.fixture
def evaluator_factory(eval_files, tmp_path, monkeypatch):
    """Evaluators offline, with the random weights and a private cache."""
    from img2img.eval import EvalSettings, Evaluator

    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("IMG2IMG_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def make(**options) -> Evaluator:
        options.setdefault("inception_weights", str(eval_files["inception"]))
        options.setdefault("lpips_weights", str(eval_files["alexnet"]))
        options.setdefault("device", "cpu")
        return Evaluator(EvalSettings(**options))

    return make


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


# --- (a) agreement with the libraries ---------------------------------------------------------


def test_fid_kid_is_agree_with_torch_fidelity(eval_files, evaluator_factory):
    """torch-fidelity's own pipeline (its file listing, decoding, resize and network, loading
    the same weights file) against ours. Its FID runs in the samples' span (a 2048 x 2048
    eigenvalue problem takes minutes on a loaded CPU; test_span_coordinates_keep_fid_exact shows
    the projection changes nothing but rounding)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_isc import isc_featuresdict_to_metric
    from torch_fidelity.metric_kid import kid_featuresdict_to_metric
    from torch_fidelity.utils import create_feature_extractor, extract_featuresdict_from_input_id

    from img2img.eval.metrics import span_coordinates

    # IS with 2 splits: 5 images cannot fill torch-fidelity's default 10 (a split needs 2 images).
    ours = evaluator_factory(use_cache=False, is_splits=2).compare_folders(
        fake=eval_files["fake"], real=eval_files["real"]
    )
    options = dict(
        input1=str(eval_files["fake"]), input2=str(eval_files["real"]), cuda=False, verbose=False, cache=False,
        feature_extractor_weights_path=str(eval_files["inception"]), kid_subset_size=N, isc_splits=2,
    )  # fmt: skip
    extractor = create_feature_extractor("inception-v3-compat", ["2048", "logits_unbiased"], **options)
    fake, real = (extract_featuresdict_from_input_id(i, extractor, **options) for i in (1, 2))
    pa, pb = span_coordinates(fake["2048"], real["2048"])
    fid = fid_statistics_to_metric(fid_features_to_statistics(pa), fid_features_to_statistics(pb), False)
    kid = kid_featuresdict_to_metric(fake, real, "2048", **options)
    isc = isc_featuresdict_to_metric(fake, "logits_unbiased", **options)

    scores = ours["scores"]
    assert scores["fid"]["value"] > 1e-3  # two different sets: a real distance, not rounding
    assert _rel(scores["fid"]["value"], fid["frechet_inception_distance"]) < 1e-3
    assert _rel(scores["kid"]["value"], kid["kernel_inception_distance_mean"]) < 1e-3
    # 5 and 5 samples: every KID subset is the whole set, so torch-fidelity's std is rounding
    # noise; ours says there is no spread to estimate.
    assert abs(kid["kernel_inception_distance_std"]) < 1e-3 * abs(scores["kid"]["value"])
    assert scores["kid"]["std"] is None and "no spread" in scores["kid"]["note"]
    assert _rel(scores["is"]["value"], isc["inception_score_mean"]) < 1e-3
    assert scores["kid"]["subset_size"] == N and ours["samples"] == {"fake": N, "real": N, "failed": 0}
    assert "KID is the comparable figure" in scores["fid"]["note"]
    assert ours["settings"]["inception"]["weights"]["standard"] is False


def test_clean_resize_agrees_with_clean_fid(eval_files, evaluator_factory):
    cleanfid = pytest.importorskip("cleanfid.fid")
    from img2img.eval import metrics as M
    from img2img.eval.features import extract, folder_items

    evaluator = evaluator_factory(resize="clean", use_cache=False)
    net = evaluator.inception

    class Pool(torch.nn.Module):  # clean-fid hands float (N, 3, 299, 299) in [0, 255]
        def forward(self, x):
            return net.features(list(x))[0]

    features, ours = {}, {}
    for side in ("fake", "real"):
        ours[side] = extract(folder_items(eval_files[side]), net).pool
        theirs = cleanfid.get_folder_features(
            str(eval_files[side]), Pool(), num_workers=0, batch_size=8, device=torch.device("cpu"),
            mode="clean", verbose=False,
        )  # fmt: skip
        np.testing.assert_allclose(ours[side].double().numpy(), theirs, rtol=1e-4, atol=1e-5)
        features[side] = theirs
    # clean-fid's own Fréchet distance on its features (in the samples' span, see
    # metrics.span_coordinates: scipy's 2048x2048 sqrtm takes minutes on a loaded CPU).
    a, b = M.span_coordinates(torch.from_numpy(features["fake"]), torch.from_numpy(features["real"]))
    a, b = a.numpy(), b.numpy()
    theirs = cleanfid.frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert _rel(M.fid(ours["fake"], ours["real"])["value"], theirs) < 1e-3
    # The option matters: the default resize gives other features.
    tf1 = evaluator_factory().inception
    first = folder_items(eval_files["fake"])[:1]
    assert not torch.allclose(extract(first, tf1).pool[0], ours["fake"][0], rtol=1e-3, atol=1e-6)


def test_span_coordinates_keep_fid_exact():
    """The projection that makes small-sample FID fast changes nothing but rounding."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    from img2img.eval.metrics import span_coordinates

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(6, 64, generator=generator)
    b = torch.randn(7, 64, generator=generator) * 1.3 + 0.2
    direct = fid_statistics_to_metric(
        fid_features_to_statistics(a.double()), fid_features_to_statistics(b.double()), False
    )
    pa, pb = span_coordinates(a, b)
    assert pa.shape[1] <= 6 + 7 + 1
    projected = fid_statistics_to_metric(fid_features_to_statistics(pa), fid_features_to_statistics(pb), False)
    # The direct route sums square roots of ~1e-16 eigenvalues of the rank-deficient product
    # (rounding noise, ~1e-8 each); the projected one has none of them.
    assert _rel(projected["frechet_inception_distance"], direct["frechet_inception_distance"]) < 1e-6


# --- (b) FID behaves ---------------------------------------------------------------------------


def test_fid_is_zero_for_the_same_set_and_grows_with_noise(eval_files, evaluator_factory):
    evaluator = evaluator_factory()
    same = evaluator.compare_folders(fake=eval_files["real"], real=eval_files["real"])["scores"]["fid"]["value"]
    small = evaluator.compare_folders(fake=eval_files["noisy_small"], real=eval_files["real"])["scores"]["fid"]["value"]
    large = evaluator.compare_folders(fake=eval_files["noisy_large"], real=eval_files["real"])["scores"]["fid"]["value"]
    assert abs(same) < 1e-6 * max(large, 1.0)
    assert 0 < small < large


# --- (c) KID's subsets -------------------------------------------------------------------------


def test_kid_caps_the_subset_size_and_reports_the_spread():
    from torch_fidelity.metric_kid import kid_features_to_metric

    from img2img.eval.metrics import kid

    generator = torch.Generator().manual_seed(1)
    fake, real = torch.randn(5, 32, generator=generator), torch.randn(7, 32, generator=generator) + 0.3
    with pytest.raises(Exception, match="KID subset size"):  # torch-fidelity's default refuses small sets
        kid_features_to_metric(fake, real, verbose=False)
    ours = kid(fake, real)
    assert ours["subset_size"] == 5 and ours["subset_size_requested"] == 1000
    reference = kid_features_to_metric(fake, real, kid_subset_size=5, verbose=False)
    assert ours["value"] == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-9)
    assert ours["std"] == pytest.approx(reference["kernel_inception_distance_std"], rel=1e-9)
    assert ours["std"] > 0  # 7 real samples: the subsets differ
    # 5 and 5 samples: every subset is the whole set, so there is no spread to estimate.
    assert kid(fake, fake.flip(0))["std"] is None
    with pytest.raises(UsageError, match="at least 2"):
        kid(fake[:1], real)


# --- (d) the feature cache ---------------------------------------------------------------------


def test_real_features_are_cached_by_content_and_settings(eval_files, evaluator_factory, tmp_path):
    import shutil

    real = tmp_path / "real"
    shutil.copytree(eval_files["real"], real)
    first = evaluator_factory().compare_folders(fake=eval_files["fake"], real=real)
    assert first["settings"]["inception"]["feature_cache"] == {"fake": "miss", "real": "miss"}
    again = evaluator_factory()
    second = again.compare_folders(fake=eval_files["fake"], real=real)
    assert second["settings"]["inception"]["feature_cache"] == {"fake": "hit", "real": "hit"}
    assert again._inception is None  # nothing to extract: the network was never built
    assert second["scores"]["fid"]["value"] == first["scores"]["fid"]["value"]
    # Another file's contents, or another resize, is another entry.
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(real / "0.png")
    changed = evaluator_factory().compare_folders(fake=eval_files["fake"], real=real)
    assert changed["settings"]["inception"]["feature_cache"]["real"] == "miss"
    assert changed["scores"]["fid"]["value"] != first["scores"]["fid"]["value"]
    clean = evaluator_factory(resize="clean", metrics=("is",)).compare_folders(fake=eval_files["fake"], real=real)
    assert clean["settings"]["inception"]["feature_cache"]["fake"] == "miss"


# --- (e) paired metrics ------------------------------------------------------------------------


def test_psnr_is_the_mean_of_per_image_psnr(tmp_path, evaluator_factory):
    from img2img.eval import folder_comparison

    target = _write(tmp_path / "target", [np.full((16, 16, 3), 100, np.uint8)] * 2)
    fake = _write(tmp_path / "fake", [np.full((16, 16, 3), 151, np.uint8), np.full((16, 16, 3), 202, np.uint8)], "png")
    result = evaluator_factory(metrics=("psnr",)).evaluate(folder_comparison(fake=fake, real=None, target=target))
    # offsets 0.2 and 0.4 of the range: 13.979 dB and 7.959 dB; the PSNR of the pooled MSE
    # would be 10 dB.
    expected = (-20 * math.log10(51 / 255) - 20 * math.log10(102 / 255)) / 2
    assert result["scores"]["psnr"]["value"] == pytest.approx(expected, rel=1e-9)
    identical = evaluator_factory(metrics=("psnr",)).evaluate(folder_comparison(fake=target, real=None, target=target))
    assert identical["scores"]["psnr"]["value"] is None and identical["scores"]["psnr"]["identical_pairs"] == 2


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_ssim_and_lpips_agree_with_the_libraries(tmp_path, eval_files, evaluator_factory, mode):
    from skimage.metrics import structural_similarity
    from torchmetrics.functional.image.lpips import _LPIPS

    from img2img.eval import folder_comparison

    rng = np.random.default_rng(3)
    targets = _smooth_images(rng, 2, (36, 44))
    fakes = _noisy(targets, 20, 4)
    convert = (lambda x: np.asarray(Image.fromarray(x).convert("L"))) if mode == "L" else (lambda x: x)
    target_dir = _write(tmp_path / "target", [convert(x) for x in targets])
    fake_dir = _write(tmp_path / "fake", [convert(x) for x in fakes])
    result = evaluator_factory(metrics=("ssim", "lpips")).evaluate(
        folder_comparison(fake=fake_dir, real=None, target=target_dir)
    )

    reference = torch.load(eval_files["alexnet"], weights_only=True)
    lpips_net = _LPIPS(pretrained=True, net="alex", pnet_rand=True).eval()  # its own v0.1 linear layers
    lpips_net.net.load_state_dict(
        {
            f"slice{s}.{i}.{p}": reference[f"features.{i}.{p}"]
            for s, i in ((1, 0), (2, 3), (3, 6), (4, 8), (5, 10))
            for p in ("weight", "bias")
        }
    )
    ssims, lpipses = [], []
    for fake, target in zip(fakes, targets):
        a, b = convert(fake) / 255.0, convert(target) / 255.0
        ssims.append(structural_similarity(b, a, gaussian_weights=True, sigma=1.5, win_size=11, use_sample_covariance=False,
                                           data_range=1.0, channel_axis=2 if a.ndim == 3 else None))  # fmt: skip
        ta, tb = (
            torch.from_numpy(np.dstack([x] * 3) if x.ndim == 2 else x).permute(2, 0, 1)[None].float() for x in (a, b)
        )
        lpipses.append(float(lpips_net(ta, tb, normalize=True)))
    assert result["scores"]["ssim"]["value"] == pytest.approx(np.mean(ssims), rel=1e-6)
    assert result["scores"]["lpips"]["value"] == pytest.approx(np.mean(lpipses), rel=1e-5)
    assert result["scores"]["lpips"]["value"] > 0
    assert result["scores"]["ssim"]["win_size"] == 11 and result["scores"]["ssim"]["sigma"] == 1.5


def test_pairs_too_small_for_a_metric_are_left_out_of_that_metric_only(tmp_path, evaluator_factory):
    """SSIM needs its 11x11 window and LPIPS' AlexNet 31x31 pixels (neither library resizes):
    smaller pairs are left out of that metric, with a note, and every other metric counts them
    (they used to be dropped from PSNR too, as failures)."""
    from img2img.eval import folder_comparison

    rng = np.random.default_rng(7)
    sizes = {"a": (8, 9), "b": (20, 24), "c": (36, 44)}
    targets = {name: _smooth_images(rng, 1, size)[0] for name, size in sizes.items()}
    fakes = {name: _noisy([x], 20, i)[0] for i, (name, x) in enumerate(targets.items())}
    for folder, images in (("target", targets), ("fake", fakes)):
        (tmp_path / folder).mkdir()
        for name, pixels in images.items():
            Image.fromarray(pixels).save(tmp_path / folder / f"{name}.png")
    evaluator = evaluator_factory(metrics=("psnr", "ssim", "lpips"))
    result = evaluator.evaluate(folder_comparison(fake=tmp_path / "fake", real=None, target=tmp_path / "target"))
    scores = result["scores"]
    assert result["samples"]["failed"] == 0
    assert (scores["psnr"]["pairs"], scores["ssim"]["pairs"], scores["lpips"]["pairs"]) == (3, 2, 1)
    alone = evaluator.lpips(fakes["c"] / 255.0, targets["c"] / 255.0)
    assert scores["lpips"]["value"] == pytest.approx(alone, rel=1e-6)
    notes = " ".join(result["notes"])
    assert "LPIPS: 2 pairs smaller than 31x31" in notes and "SSIM: 1 pair smaller than 11x11" in notes


def test_lpips_smallest_side_is_the_networks():
    from torchmetrics.functional.image.lpips import _LPIPS

    from img2img.eval.metrics import LPIPS_MIN_SIDE

    net = _LPIPS(pretrained=False, net="alex", pnet_rand=True).eval()
    side = LPIPS_MIN_SIDE
    net(torch.rand(1, 3, side, 2 * side), torch.rand(1, 3, side, 2 * side))
    with pytest.raises(RuntimeError, match="too small"):
        net(torch.rand(1, 3, side - 1, 2 * side), torch.rand(1, 3, side - 1, 2 * side))


@pytest.mark.parametrize("metric", ["fid", "kid"])
def test_too_few_images_for_fid_or_kid_stop_eval_before_any_work(capsys, tmp_path, eval_files, metric):
    """One image cannot give FID or KID: a usage error before the Inception is even looked
    for (its file here does not exist) or any image translated."""
    one = _write(tmp_path / "one", _smooth_images(np.random.default_rng(1), 1))
    code, out, err = _run(
        capsys, "--fake", str(one), "--real", str(eval_files["real"]), "--metrics", metric,
        "--inception-weights", str(tmp_path / "nowhere.pth"),
    )  # fmt: skip
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"{metric.upper()} needs at least 2 translated images" in err and "has 1" in err


# --- weights: lookup, safety, offline ----------------------------------------------------------


def test_weights_lookup_order_and_checksum(tmp_path, monkeypatch):
    from img2img.eval.pretrained import INCEPTION, KnownWeights, find_weights

    monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("IMG2IMG_OFFLINE", "1")
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    import hashlib

    payload = b"stand-in weights"
    known = KnownWeights("test weights", "--test-weights", ("w.pth", "other-name.pth"), ("https://invalid/w.pth",),
                         sha256=hashlib.sha256(payload).hexdigest())  # fmt: skip
    with pytest.raises(DownloadError) as missing:
        find_weights(known)
    message = str(missing.value)
    assert (
        "w.pth" in message
        and str(tmp_path / "cache" / "eval") in message
        and "curl" in message
        and "--test-weights" in message
    )
    (hub / "other-name.pth").write_bytes(payload)  # torch-fidelity's name for the same file
    assert find_weights(known).source == "torch hub cache"
    (tmp_path / "cache" / "eval").mkdir(parents=True)
    (tmp_path / "cache" / "eval" / "w.pth").write_bytes(payload)
    assert find_weights(known).source == "img2img cache"
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"something else")
    found = find_weights(known, explicit)
    assert found.source == "option" and found.standard is False
    (tmp_path / "cache" / "eval" / "w.pth").write_bytes(b"corrupt")
    with pytest.raises(WeightsError, match="not the published"):
        find_weights(known)
    assert INCEPTION.sha256.startswith("6726825d")  # torch hub's file-name convention


def test_weights_files_are_loaded_without_unpickling_code(tmp_path):
    from img2img.eval.pretrained import load_tensors

    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as handle:
        pickle.dump({"x": Exploit()}, handle)
    with pytest.raises(WeightsError, match="evil.pth: cannot read weights"):
        load_tensors(evil)
    assert not marker.exists()


def test_a_file_of_the_wrong_layout_is_one_clear_error(tmp_path, evaluator_factory):
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pth")
    evaluator = evaluator_factory(inception_weights=str(tmp_path / "wrong.pth"))
    with pytest.raises(WeightsError, match="wrong.pth: not the FID Inception's layout"):
        evaluator.inception
    with pytest.raises(WeightsError, match="wrong.pth: not LPIPS AlexNet weights"):
        evaluator_factory(lpips_weights=str(tmp_path / "wrong.pth")).lpips


def test_missing_extra_names_the_install_command(monkeypatch):
    import builtins

    from img2img.eval._deps import MissingExtraError, require

    real_import = builtins.__import__

    def refuse(name, *args, **kwargs):
        if name.startswith("torch_fidelity"):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    monkeypatch.delitem(__import__("sys").modules, "torch_fidelity.metric_fid", raising=False)
    with pytest.raises(MissingExtraError, match=r'torch-fidelity: pip install "img2img\[eval\]"'):
        require("torch_fidelity.metric_fid")


# --- the command ---------------------------------------------------------------------------------


def _run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", *args])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fake", "F"], "--fake needs --real"),
        (["--input", "I", "--real", "R"], "--input needs --model"),
        (["--model", "M", "--fake", "F", "--real", "R"], "--fake is for translations made elsewhere"),
        (["--model", "M", "--input", "I"], "--input needs something to compare with"),
        (["--fake", "F", "--real", "R", "--split", "val"], "--split goes with --data"),
    ],
)
def test_usage_errors_exit_2(capsys, args, message):
    code, out, err = _run(capsys, *args)
    assert code == 2 and message in err and out == ""


def test_metrics_the_inputs_cannot_give_are_usage_errors(capsys, eval_files, evaluator_factory):
    code, _, err = _run(
        capsys, "--fake", str(eval_files["fake"]), "--real", str(eval_files["real"]), "--metrics", "psnr"
    )
    assert code == 2 and "psnr needs targets" in err
    code, _, err = _run(
        capsys, "--fake", str(eval_files["fake"]), "--real", str(eval_files["real"]), "--metrics", "fid,bogus"
    )
    assert code == 2 and "unknown metric 'bogus'" in err


def test_offline_without_weights_is_one_line(capsys, eval_files, evaluator_factory):
    code, out, err = _run(capsys, "--fake", str(eval_files["fake"]), "--real", str(eval_files["real"]))
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1
    assert "pt_inception-2015-12-05-6726825d.pth" in lines[0] and "--inception-weights" in lines[0]
    assert "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" in lines[0]


def test_unreadable_and_unpaired_files_are_counted(capsys, tmp_path, eval_files, evaluator_factory):
    import shutil

    fake = tmp_path / "fake"
    shutil.copytree(eval_files["fake"], fake)
    (fake / "broken.png").write_bytes(b"not an image")
    (fake / "sub").mkdir()
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(fake / "sub" / "extra.png")
    code, out, err = _run(
        capsys, "--fake", str(fake), "--target", str(eval_files["real"]), "--metrics", "psnr,ssim",
        "--lpips-weights", str(eval_files["alexnet"]), "--json",
    )  # fmt: skip
    result = json.loads(out)["evaluations"][0]
    assert code == 1
    assert result["samples"]["pairs"] == N and result["samples"]["failed"] == 2
    errors = [line for line in err.splitlines() if line.startswith("img2img: error:")]
    assert len(errors) == 2 and any("broken.png" in e for e in errors) and any("sub/extra" in e for e in errors)


def test_model_with_input_real_and_target(capsys, tmp_path, eval_files, evaluator_factory):
    from conftest import make_generator_file

    model = make_generator_file(tmp_path / "g.safetensors", task="pix2pix")
    rng = np.random.default_rng(5)
    inputs = _write(tmp_path / "in", _smooth_images(rng, 3, (32, 40)), "jpg")
    targets = _write(tmp_path / "truth", _smooth_images(rng, 3, (32, 40)))
    code, out, err = _run(
        capsys, "--model", str(model), "--input", str(inputs), "--real", str(targets), "--target", str(targets),
        "--inception-weights", str(eval_files["inception"]), "--lpips-weights", str(eval_files["alexnet"]),
        "--metrics", "is,psnr,ssim,lpips", "--save-outputs", str(tmp_path / "kept"), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)["evaluations"][0]
    assert result["samples"]["pairs"] == 3 and result["model"]["task"] == "pix2pix"
    kept = sorted(p.name for p in (tmp_path / "kept").iterdir())
    assert kept == ["0.png", "1.png", "2.png"]
    # The kept outputs, measured as files, give the same paired scores.
    code, out2, _ = _run(capsys, "--fake", str(tmp_path / "kept"), "--target", str(targets), "--metrics", "psnr,ssim",
                         "--json")  # fmt: skip
    again = json.loads(out2)["evaluations"][0]["scores"]
    assert again["psnr"]["value"] == pytest.approx(result["scores"]["psnr"]["value"], rel=1e-12)
    assert again["ssim"]["value"] == pytest.approx(result["scores"]["ssim"]["value"], rel=1e-12)


def test_model_with_datasets_in_both_layouts(capsys, tmp_path, eval_files, evaluator_factory):
    from conftest import make_generator_file

    rng = np.random.default_rng(6)
    aligned = tmp_path / "facades" / "val"
    _write(
        aligned,
        [
            np.concatenate([a, b], axis=1)
            for a, b in zip(_smooth_images(rng, 2, (32, 32)), _smooth_images(rng, 2, (32, 32)))
        ],
    )
    p2p = make_generator_file(tmp_path / "p2p.safetensors", task="pix2pix")
    code, out, err = _run(
        capsys, "--model", str(p2p), "--data", str(tmp_path / "facades"), "--metrics", "psnr,ssim", "--json"
    )
    assert code == 0, err
    result = json.loads(out)["evaluations"][0]
    assert result["inputs"]["layout"] == "aligned" and result["samples"]["pairs"] == 2

    horse2zebra = tmp_path / "h2z"
    _write(horse2zebra / "testA", _smooth_images(rng, 2, (32, 32)))
    _write(horse2zebra / "testB", _smooth_images(rng, 3, (32, 32)))
    a2b = make_generator_file(tmp_path / "a2b.safetensors", task="cyclegan", direction="AtoB")
    b2a = make_generator_file(tmp_path / "b2a.safetensors", task="cyclegan", direction="BtoA", seed=1)
    code, out, err = _run(capsys, "--model", str(a2b), "--model", str(b2a), "--data", str(horse2zebra), "--metrics", "is",
                          "--inception-weights", str(tmp_path / "missing.pth"))  # fmt: skip
    assert code == 1 and "missing.pth: no such file" in err  # found before translating anything
    code, out, err = _run(capsys, "--model", str(a2b), "--data", str(horse2zebra), "--metrics", "psnr")
    assert code == 2 and "psnr needs targets" in err
    code, out, err = _run(capsys, "--model", str(a2b), "--model", str(b2a), "--data", str(horse2zebra), "--metrics", "is",
                          "--inception-weights", str(eval_files["inception"]), "--json")  # fmt: skip
    assert code == 0, err
    results = json.loads(out)["evaluations"]
    assert [(r["direction"], r["samples"]["fake"]) for r in results] == [("AtoB", 2), ("BtoA", 3)]
    assert results[1]["inputs"]["input"].endswith("testB")


# --- during training ---------------------------------------------------------------------------


def test_val_metrics_options_are_checked_before_training():
    from img2img.eval.validation import better
    from img2img.train.config import CycleGANConfig, Pix2PixConfig

    with pytest.raises(UsageError, match="unpaired; use fid, kid or is"):
        CycleGANConfig(data="d", val_metrics="fid,psnr")
    with pytest.raises(UsageError, match="unknown metric 'fdi'"):
        Pix2PixConfig(data="d", val_metrics="fdi")
    with pytest.raises(UsageError, match="--keep-best ssim: not among --val-metrics"):
        Pix2PixConfig(data="d", val_metrics="fid", keep_best="ssim")
    assert Pix2PixConfig(data="d", val_metrics="ssim,fid", keep_best="ssim").keep_best == "ssim"
    assert better("fid", 10.0, 12.0) and not better("fid", 12.0, 10.0)
    assert better("ssim", 0.8, 0.7) and not better("psnr", 20.0, 21.0) and better("kid", 1.0, None)


def test_validation_scorer_scores_the_generators_as_exported(tmp_path, eval_files, evaluator_factory):
    from dataclasses import dataclass

    from img2img.eval.validation import ValidationScorer
    from img2img.models.config import GeneratorConfig
    from img2img.models.networks import build_generator, init_weights

    @dataclass
    class Exported:  # what TrainableModel.export_generators() gives
        state_dict: dict
        config: GeneratorConfig
        eval_mode: bool = True

    config = GeneratorConfig(arch="resnet", ngf=4, n_blocks=1)
    torch.manual_seed(0)
    exported = {"AtoB": Exported(init_weights(build_generator(config)).state_dict(), config)}
    generator = torch.Generator().manual_seed(0)
    batches = [
        {"input": torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1, "target": torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1, "name": [f"{i}.png"]}
        for i in range(3)
    ]  # fmt: skip
    scorer = ValidationScorer(
        ("fid", "psnr", "ssim"), task="pix2pix", device="cpu", inception_weights=str(eval_files["inception"])
    )
    first = scorer.score(batches, exported)
    assert set(first.figures) == {"val_fid", "val_psnr", "val_ssim"} and scorer.names() == [
        "val_fid",
        "val_psnr",
        "val_ssim",
    ]
    assert first.record["AtoB"]["samples"] == {"fake": 3, "real": 3, "pairs": 3, "failed": 0}
    # The same translations as `translate` would make from the exported file, scored by `eval`.
    from img2img.models.weights import WeightsMetadata, save_generator
    from img2img.translate.translator import Translator

    save_generator(
        tmp_path / "g.safetensors", exported["AtoB"].state_dict, WeightsMetadata(generator=config, task="pix2pix")
    )
    translator = Translator(str(tmp_path / "g.safetensors"), device="cpu", precision="fp32")
    from img2img.eval.validation import _to_image

    psnrs = []
    for batch in batches:
        out = np.asarray(translator.translate_image(_to_image(batch["input"][0])), dtype=np.float64) / 255
        target = np.asarray(_to_image(batch["target"][0]), dtype=np.float64) / 255
        psnrs.append(10 * math.log10(1 / np.mean((out - target) ** 2)))
    assert first.figures["val_psnr"] == pytest.approx(np.mean(psnrs), rel=1e-9)
    # A second validation reuses the real set's features.
    again = scorer.score(batches, exported)
    assert again.figures == first.figures and len(scorer.evaluator._remembered) == 1


def test_exported_weights_record_validation_scores(tmp_path, capsys):
    from img2img.models.config import GeneratorConfig
    from img2img.models.networks import build_generator
    from img2img.models.weights import WeightsMetadata, read_metadata, save_generator

    config = GeneratorConfig(arch="resnet", ngf=4, n_blocks=1)
    record = {
        "epoch": 3,
        "directions": {"AtoB": {"scores": {"fid": {"value": 12.5}, "kid": {"value": 0.01, "std": 0.002}}}},
    }
    path = tmp_path / "g.safetensors"
    save_generator(path, build_generator(config).state_dict(), WeightsMetadata(generator=config, validation=record))
    assert read_metadata(path).validation == record
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "info", str(path), "--json"])
    assert exit_info.value.code in (0, None)
    info = json.loads(capsys.readouterr().out)
    assert info["validation"] == {"epoch": 3, "fid": "12.5", "kid": "0.01 ± 0.002"}
