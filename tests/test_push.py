"""`img2img push`: the folder a push uploads (--dry-run), read back with huggingface_hub; the round
trip through the Hub's cache; the token messages against a local stand-in for the Hub."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest
from conftest import make_generator_file
from PIL import Image

from img2img.cli import main

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _run_folder(tmp_path) -> Path:
    """A finished CycleGAN run folder as `train cyclegan` leaves it (tiny generators)."""
    run_dir = tmp_path / "run"
    (run_dir / "weights").mkdir(parents=True)
    for direction, seed in (("AtoB", 1), ("BtoA", 2)):
        make_generator_file(
            run_dir / "weights" / f"cyclegan_{direction}.safetensors", seed=seed, task="cyclegan", direction=direction
        )
    return run_dir


def _with_validation(path: Path, validation: dict) -> None:
    """Rewrite a weights file with a ``--val-metrics`` record in its metadata, as training does."""
    import dataclasses

    from safetensors.torch import load_file

    from img2img.models.weights import read_metadata, save_generator

    meta = dataclasses.replace(read_metadata(path), validation=validation)
    save_generator(path, load_file(path), meta)


@pytest.fixture
def cyclegan_run(tmp_path) -> Path:
    run_dir = _run_folder(tmp_path)
    data = tmp_path / "horse2zebra"
    data.mkdir()
    (data / "img2img-dataset.json").write_text(
        json.dumps({"name": "cyclegan/horse2zebra", "licence": "ImageNet terms"})
    )
    (run_dir / "config.json").write_text(
        json.dumps({"task": "cyclegan", "data": str(data), "direction": "AtoB", "netg": "resnet_1blocks", "lr": 0.0002})
    )
    (run_dir / "metrics.csv").write_text(
        "scope,epoch,iteration,elapsed_s,lr,G_A,val_cycle_A,val_cycle_B\n"
        "iter,1,2,1.0,0.0002,0.5,,\n"
        "epoch,1,4,2.0,0.0002,0.4,0.31,0.29\n"
        "epoch,2,8,4.0,0.0002,0.3,0.25,0.2125\n"
    )
    (run_dir / "samples").mkdir()
    for epoch, colour in ((1, "red"), (2, "blue")):
        Image.new("RGB", (16, 8), colour).save(run_dir / "samples" / f"epoch_{epoch:03d}.png")
    return run_dir


def test_dry_run_writes_what_a_push_uploads_and_huggingface_hub_reads_the_card(cyclegan_run, tmp_path, capsys):
    from huggingface_hub import ModelCard

    out = tmp_path / "pushed"
    assert (
        run(
            [
                "push",
                str(cyclegan_run),
                "--repo",
                "owner/h2z",
                "--revision",
                "v1",
                "--license",
                "mit",
                "--dry-run",
                str(out),
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "img2img translate INPUT... --model hf:owner/h2z@v1 --out-dir OUT",
        "img2img translate INPUT... --model hf:owner/h2z@v1/model_BtoA.safetensors --out-dir OUT",
    ]
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "model.safetensors",
        "model_BtoA.safetensors",
        "sample.png",
        "training_config.json",
    ]
    weights = cyclegan_run / "weights"
    assert (out / "model.safetensors").read_bytes() == (weights / "cyclegan_AtoB.safetensors").read_bytes()
    assert (out / "model_BtoA.safetensors").read_bytes() == (weights / "cyclegan_BtoA.safetensors").read_bytes()
    assert Image.open(out / "sample.png").getpixel((0, 0)) == (0, 0, 255)  # the last epoch's grid

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "img2img" and card.data.license == "mit"
    assert "cyclegan" in card.data.tags and card.data.model_name == "h2z"
    results = {r.metric_type: r for r in card.data.eval_results}
    assert {name: r.metric_value for name, r in results.items()} == {"val_cycle_A": 0.25, "val_cycle_B": 0.2125}
    assert results["val_cycle_A"].dataset_name == "cyclegan/horse2zebra"
    for line in lines:
        assert line in card.text
    assert "ImageNet terms" in card.text and "![validation samples](sample.png)" in card.text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_card_scores_the_epoch_the_weights_come_from(cyclegan_run, tmp_path):
    """Weights exported from epoch 1 (--keep-best) with --val-metrics scores in their metadata:
    the card has that epoch's figures of metrics.csv and the stored scores, not the last epoch's."""
    from huggingface_hub import ModelCard

    record = {"epoch": 1, "directions": {
        "AtoB": {"scores": {"fid": {"value": 42.5}}, "samples": {"fake": 10, "real": 10}, "settings": {"resize": 299}},
        "BtoA": {"scores": {"fid": {"value": 40.0}}, "samples": {"fake": 10, "real": 10}, "settings": {"resize": 299}},
    }}  # fmt: skip
    _with_validation(cyclegan_run / "weights" / "cyclegan_AtoB.safetensors", record)
    out = tmp_path / "pushed"
    assert run(["push", str(cyclegan_run), "--repo", "owner/h2z", "--dry-run", str(out)]) == 0
    card = ModelCard.load(out / "README.md")
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == {
        "val_cycle_A": 0.31,
        "val_cycle_B": 0.29,
        "val_fid_AtoB": 42.5,
        "val_fid_BtoA": 40.0,
    }
    assert "(epoch 1)" in card.text


def test_dry_run_refuses_what_is_not_a_run_and_a_bad_repo(cyclegan_run, tmp_path, capsys):
    assert run(["push", str(tmp_path), "--repo", "owner/x", "--dry-run", str(tmp_path / "o")]) == 2
    assert "not a finished training run" in capsys.readouterr().err
    assert run(["push", str(cyclegan_run), "--repo", "no-owner", "--dry-run", str(tmp_path / "o")]) == 2
    assert "expected OWNER/NAME" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_round_trip_through_the_hub_cache_gives_the_same_bytes(cyclegan_run, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    out = tmp_path / "pushed"
    assert run(["push", str(cyclegan_run), "--repo", "owner/h2z", "--dry-run", str(out)]) == 0
    # What the Hub serves after the upload, as hf_hub_download leaves it in the cache.
    hub = tmp_path / "hf" / "hub"
    repo = hub / "models--owner--h2z"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for file in out.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    image = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (30, 120, 200)).save(image)
    pairs = [("hf:owner/h2z", "cyclegan_AtoB"), ("hf:owner/h2z/model_BtoA.safetensors", "cyclegan_BtoA")]
    for spec, local in pairs:
        a, b = tmp_path / f"{local}-hub.png", tmp_path / f"{local}-local.png"
        assert run(["translate", str(image), "--model", spec, "-o", str(a)]) == 0
        assert (
            run(
                [
                    "translate",
                    str(image),
                    "--model",
                    str(cyclegan_run / "weights" / f"{local}.safetensors"),
                    "-o",
                    str(b),
                ]
            )
            == 0
        )
        assert a.read_bytes() == b.read_bytes()

    # models info shows the scores the card carries.
    capsys.readouterr()
    assert run(["models", "info", "hf:owner/h2z", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["card_scores"] == {"val_cycle_A": 0.25, "val_cycle_B": 0.2125}


# --- tokens, against a local stand-in for the Hub ----------------------------------------------------


@pytest.fixture
def no_stored_token(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))


def test_no_token_is_one_line_saying_what_to_do(cyclegan_run, no_stored_token, monkeypatch, capsys):
    monkeypatch.setenv("IMG2IMG_OFFLINE", "1")
    assert run(["push", str(cyclegan_run), "--repo", "owner/h2z"]) == 1
    assert "offline (IMG2IMG_OFFLINE is set)" in capsys.readouterr().err
    monkeypatch.delenv("IMG2IMG_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert run(["push", str(cyclegan_run), "--repo", "owner/h2z"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Hugging Face token" in err[0] and "HF_TOKEN" in err[0] and "hf auth login" in err[0]


class StandInHub:
    """Answers every request with ``status`` (a JSON error), and records them."""

    def __init__(self, status: int) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                hub.requests.append((self.command, self.path, self.headers.get("Authorization")))
                body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _answer

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_is_one_line_saying_what_to_do(cyclegan_run, no_stored_token, monkeypatch, capsys, status):
    from huggingface_hub import constants

    hub = StandInHub(status)
    try:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
        assert run(["push", str(cyclegan_run), "--repo", "owner/h2z"]) == 1
    finally:
        hub.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"refused the token (HTTP {status})" in err[0] and "write access" in err[0]
    assert hub.requests and hub.requests[0][:2] == ("POST", "/api/repos/create")
    assert hub.requests[0][2] == "Bearer hf_not_a_real_token"


class StandInUploadHub:
    """The Hub endpoints an upload uses (repo creation, branch, preupload, commit), in memory:
    every file is declared a regular (inline, base64) upload, so the commit carries the bytes."""

    def __init__(self) -> None:
        import base64

        self.created: list[dict] = []
        self.branches: list[str] = []
        self.validated: list[dict] = []
        self.commits: dict[str, dict[str, bytes]] = {}
        self.unexpected: list[str] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, payload: dict, status: int = 200) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    request = json.loads(body)
                    hub.created.append(request)
                    self._reply({"url": f"{hub.url}/{request['organization']}/{request['name']}"})
                elif path == "/api/validate-yaml":  # the card's metadata, checked before the commit
                    hub.validated.append(json.loads(body))
                    self._reply({"errors": [], "warnings": []})
                elif "/branch/" in path:
                    hub.branches.append(path.rsplit("/branch/", 1)[1])
                    self._reply({})
                elif "/preupload/" in path:
                    files = json.loads(body)["files"]
                    self._reply(
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
                    )
                elif "/commit/" in path:
                    revision = path.rsplit("/commit/", 1)[1]
                    files = {}
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    hub.commits[revision] = files
                    self._reply({"commitUrl": f"{hub.url}/owner/h2z/commit/{COMMIT}", "commitOid": COMMIT})
                else:
                    hub.unexpected.append(f"POST {path}")
                    self._reply({"error": "not here"}, 404)

            def do_GET(self) -> None:
                hub.unexpected.append(f"GET {self.path}")
                self._reply({"error": "not here"}, 404)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_push_uploads_the_dry_run_folder_through_huggingface_hub(
    cyclegan_run, no_stored_token, tmp_path, monkeypatch, capsys
):
    from huggingface_hub import constants

    dry = tmp_path / "dry"
    assert run(["push", str(cyclegan_run), "--repo", "owner/h2z", "--revision", "v1", "--dry-run", str(dry)]) == 0
    hub = StandInUploadHub()
    try:
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        capsys.readouterr()
        assert run(["push", str(cyclegan_run), "--repo", "owner/h2z", "--private", "--revision", "v1"]) == 0
    finally:
        hub.close()
    captured = capsys.readouterr()
    # (huggingface_hub may also GET things of its own, which the stand-in answers 404.)
    assert [u for u in hub.unexpected if not u.startswith("GET ")] == []
    assert hub.created[0]["name"] == "h2z", hub.created
    assert hub.created[0].get("visibility") == "private" or hub.created[0].get("private") is True, hub.created
    assert hub.branches == ["v1"] and len(hub.validated) == 1
    uploaded = hub.commits["v1"]
    assert uploaded == {p.name: p.read_bytes() for p in dry.iterdir()}  # what --dry-run shows is what is pushed
    assert f"pushed to {hub.url}/owner/h2z/commit/{COMMIT}" in captured.err
    assert "img2img translate INPUT... --model hf:owner/h2z@v1 --out-dir OUT" in captured.out


def test_dry_run_into_a_folder_that_exists_takes_overwrite_or_skip_existing(cyclegan_run, tmp_path, capsys):
    """Like every command that writes: refused naming both options, kept, or replaced whole."""
    out = tmp_path / "pushed"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    assert run(["push", str(cyclegan_run), "--repo", "owner/x", "--dry-run", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and "--skip-existing" in err
    assert run(["push", str(cyclegan_run), "--repo", "owner/x", "--dry-run", str(out), "--skip-existing"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert run(["push", str(cyclegan_run), "--repo", "owner/x", "--dry-run", str(out), "--overwrite"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "mine.txt" not in names and "README.md" in names and "model.safetensors" in names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".img2img-data.")]


def test_a_dry_run_folder_that_cannot_be_made_is_named_as_such(cyclegan_run, tmp_path, capsys):
    """The staging folder is shared with data download; its error names what push writes."""
    (tmp_path / "afile").write_text("not a folder")
    code = run(["push", str(cyclegan_run), "--repo", "owner/x", "--dry-run", str(tmp_path / "afile" / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "cannot write the --dry-run folder here" in err and "dataset" not in err
    assert len(err.strip().splitlines()) == 1
