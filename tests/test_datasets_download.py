"""`img2img data download`: against a local HTTP server serving archives the tests build."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from img2img.cli import main

# --- the server ---------------------------------------------------------------------------------


class Server:
    """Serves ``files`` (URL path -> bytes) on 127.0.0.1. ``ranges``: honour Range requests.
    ``cut``: path -> bytes after which the connection is closed (the full length declared).
    ``block``: path -> bytes after which the reply waits for ``release`` (``reached`` is set)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.etags = True
        self.cut: dict[str, int] = {}
        self.block: dict[str, int] = {}
        self.reached = threading.Event()
        self.release = threading.Event()
        self.requests: list[tuple[str, str | None]] = []
        self.if_range: list[str | None] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                server.if_range.append(self.headers.get("If-Range"))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                asked = self.headers.get("Range")
                etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
                if_range = self.headers.get("If-Range")
                if if_range is not None and if_range != etag:
                    asked = None  # the file changed since: all of it (RFC 9110 If-Range)
                if asked and server.ranges:
                    start = int(asked.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                if server.etags:
                    self.send_header("ETag", etag)
                self.end_headers()
                rest = body[start:]
                if self.path in server.block:
                    n = server.block[self.path]
                    self.wfile.write(rest[:n])
                    self.wfile.flush()
                    server.reached.set()
                    server.release.wait(60)
                    return  # the connection closes: the body is cut short
                if self.path in server.cut:
                    self.wfile.write(rest[: server.cut.pop(self.path)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(rest)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch, tmp_path):
    with Server() as running:
        monkeypatch.setenv("IMG2IMG_DATA_BASE_URL", running.url)
        monkeypatch.setenv("IMG2IMG_CACHE", str(tmp_path / "cache"))
        monkeypatch.delenv("IMG2IMG_OFFLINE", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        for proxy in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(proxy, raising=False)
        yield running


# --- archives -------------------------------------------------------------------------------------


def _png(size: tuple[int, int], seed: int) -> bytes:
    """Noise, so that the archives do not compress to almost nothing."""
    image = Image.frombytes("RGB", size, random.Random(seed).randbytes(size[0] * size[1] * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pix2pix_tar(name: str = "facades", n: int = 4) -> bytes:
    """A tar.gz like the reference's: NAME/train/*.png and NAME/val/*.png, A|B side by side."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for split, count in (("train", n), ("val", 2)):
            for i in range(count):
                data = _png((64, 32), i + (10 if split == "val" else 0))
                info = tarfile.TarInfo(f"{name}/{split}/{i + 1}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def cyclegan_zip(name: str = "tiny2tiny", n: int = 3) -> bytes:
    """A zip like the reference's: NAME/trainA, trainB, testA, testB."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for split, count in (("trainA", n), ("trainB", n), ("testA", 2), ("testB", 2)):
            for i in range(count):
                zf.writestr(f"{name}/{split}/{i}.png", _png((32, 32), i + len(split)))
    return out.getvalue()


def registry(tmp_path: Path, monkeypatch, **entries) -> None:
    path = tmp_path / "datasets.json"
    path.write_text(json.dumps({"schema": 1, "datasets": entries}))
    monkeypatch.setenv("IMG2IMG_DATA_REGISTRY", str(path))


def run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def errors(captured: str) -> list[str]:
    """The error lines of a command's stderr (progress notes left out)."""
    return [line for line in captured.splitlines() if line.startswith("img2img: error:")]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def looks_like_nothing(folder: Path) -> bool:
    """No dataset and no leftover of one in ``folder`` (temporaries included)."""
    return not folder.exists() or list(folder.iterdir()) == []


TINY_PIX2PIX = [
    "--netg", "unet_32", "--ngf", "8", "--ndf", "8", "--load-size", "36", "--crop-size", "32",
    "--seed", "0", "--val-size", "2", "--n-samples", "2", "--n-epochs", "1", "--n-epochs-decay", "0",
]  # fmt: skip
TINY_CYCLEGAN = [
    "--netg", "resnet_1blocks", "--ngf", "8", "--ndf", "8", "--load-size", "36", "--crop-size", "32",
    "--seed", "0", "--n-epochs", "1", "--n-epochs-decay", "0",
]  # fmt: skip


# --- good downloads, then training on them ---------------------------------------------------------


def test_pix2pix_download_is_ready_to_train(server, tmp_path, monkeypatch, capsys):
    """The real registry entry pix2pix/facades (no published hash), from the mirror: the hash
    is recorded and printed (trust on first use), and train pix2pix reads the folder as is."""
    archive = pix2pix_tar(n=1)  # one iteration of training
    server.files["/pix2pix/datasets/facades.tar.gz"] = archive
    out = tmp_path / "data" / "facades"
    assert run(["data", "download", "pix2pix/facades", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"sha256 {sha(archive)}: unverified" in err and "recorded" in err
    assert sorted(p.name for p in (out / "train").iterdir()) == ["1.png"]
    manifest = json.loads((out / "img2img-dataset.json").read_text())
    assert manifest["images"] == {"train": 1, "val": 2} and manifest["verified"] is False
    assert [p.name for p in out.parent.iterdir()] == ["facades"]  # no temporaries left

    run_dir = tmp_path / "run"
    assert run(["train", "pix2pix", "--data", str(out), "--out", str(run_dir), *TINY_PIX2PIX]) == 0
    assert list(run_dir.rglob("*.safetensors"))

    # data list now knows the counts; a second download is checked against the recorded hash.
    capsys.readouterr()
    assert run(["data", "list", "--json"]) == 0
    rows = {row["name"]: row for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["pix2pix/facades"]["images"] == {"train": 1, "val": 2}
    assert rows["pix2pix/facades"]["checked"] == "recorded"
    changed = pix2pix_tar(n=5)
    server.files["/pix2pix/datasets/facades.tar.gz"] = changed  # the host changed it
    (tmp_path / "cache" / "datasets" / "pix2pix-facades.tar.gz").unlink()
    assert run(["data", "download", "facades", "--out", str(tmp_path / "again")]) == 2  # ambiguous
    assert "pix2pix/facades or cyclegan/facades" in capsys.readouterr().err
    assert run(["data", "download", "pix2pix/facades", "--out", str(tmp_path / "again")]) == 1
    err = capsys.readouterr().err
    assert sha(archive) in err and sha(changed) in err and "pix2pix-facades.tar.gz" in err
    assert "the first download's" in err
    assert not (tmp_path / "again").exists()


def test_cyclegan_download_with_a_pinned_hash_is_ready_to_train(server, tmp_path, monkeypatch, capsys):
    archive = cyclegan_zip(n=1)  # one iteration of training
    server.files["/cyclegan/datasets/tiny2tiny.zip"] = archive
    registry(tmp_path, monkeypatch, **{"cyclegan/tiny2tiny": {
        "task": "cyclegan", "url": "cyclegan/datasets/tiny2tiny.zip", "size": len(archive),
        "sha256": sha(archive), "splits": ["trainA", "trainB"], "licence": "test",
    }})  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert run(["data", "download", "tiny2tiny"]) == 0
    out = tmp_path / "datasets" / "tiny2tiny"  # the reference's default place
    assert "matches the published hash" in capsys.readouterr().err
    assert {p.name for p in out.iterdir()} == {"trainA", "trainB", "testA", "testB", "img2img-dataset.json"}
    assert run(["train", "cyclegan", "--data", str(out), "--out", str(tmp_path / "run"), *TINY_CYCLEGAN]) == 0
    assert len(list((tmp_path / "run").rglob("*.safetensors"))) >= 2


# --- checks ----------------------------------------------------------------------------------------


def test_wrong_hash_names_the_file_and_both_hashes(server, tmp_path, monkeypatch, capsys):
    archive = cyclegan_zip()
    server.files["/x.zip"] = archive
    pinned = "0" * 64
    registry(
        tmp_path,
        monkeypatch,
        **{"cyclegan/x": {"task": "cyclegan", "url": "x.zip", "sha256": pinned, "splits": ["trainA"]}},
    )
    assert run(["data", "download", "cyclegan/x", "--out", str(tmp_path / "d" / "x")]) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and "cyclegan-x.zip" in err[0] and sha(archive) in err[0] and pinned in err[0]
    assert looks_like_nothing(tmp_path / "d")
    assert list((tmp_path / "cache" / "datasets").iterdir()) == []  # the bad part is not kept


def test_wrong_size_is_refused(server, tmp_path, monkeypatch, capsys):
    archive = cyclegan_zip()
    server.files["/x.zip"] = archive
    registry(
        tmp_path,
        monkeypatch,
        **{"cyclegan/x": {"task": "cyclegan", "url": "x.zip", "size": len(archive) - 1, "splits": ["trainA"]}},
    )
    assert run(["data", "download", "cyclegan/x", "--out", str(tmp_path / "d" / "x")]) == 1
    err = capsys.readouterr().err
    assert f"cyclegan-x.zip from {server.url}/x.zip is larger than the {len(archive) - 1} bytes" in err
    assert looks_like_nothing(tmp_path / "d")


def test_truncated_download_resumes_with_range(server, tmp_path, monkeypatch, capsys):
    archive = pix2pix_tar()
    server.files["/pix2pix/datasets/facades.tar.gz"] = archive
    server.cut["/pix2pix/datasets/facades.tar.gz"] = 10000
    out = tmp_path / "d" / "facades"
    assert run(["data", "download", "pix2pix/facades", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "interrupted" in err and "received 10000 bytes" in err and "run the same command again to resume" in err
    assert looks_like_nothing(tmp_path / "d")
    part = tmp_path / "cache" / "datasets" / "pix2pix-facades.tar.gz.part"
    assert part.stat().st_size == 10000
    assert run(["data", "download", "pix2pix/facades", "--out", str(out)]) == 0
    assert server.requests[-1] == ("/pix2pix/datasets/facades.tar.gz", "bytes=10000-")
    assert f"sha256 {sha(archive)}" in capsys.readouterr().err
    assert (out / "train" / "1.png").is_file()


def test_a_file_changed_between_attempts_is_fetched_whole_again(server, tmp_path, capsys):
    """The resume names the version it holds (If-Range with the first reply's ETag): a file
    replaced on the host since comes whole, instead of a tail glued to the old head."""
    path = "/pix2pix/datasets/facades.tar.gz"
    old, new = pix2pix_tar(), pix2pix_tar(n=5)
    server.files[path] = old
    server.cut[path] = 10000
    out = tmp_path / "d" / "facades"
    assert run(["data", "download", "pix2pix/facades", "--out", str(out)]) == 1
    server.files[path] = new
    assert run(["data", "download", "pix2pix/facades", "--out", str(out)]) == 0
    assert server.requests[-1] == (path, "bytes=10000-") and server.if_range[-1] is not None
    assert f"sha256 {sha(new)}" in capsys.readouterr().err
    assert len(list((out / "train").iterdir())) == 5
    assert sorted(p.name for p in (tmp_path / "cache" / "datasets").iterdir()) == [
        "pix2pix-facades.tar.gz",
        "pix2pix-facades.tar.gz.json",
        "pix2pix-facades.tar.gz.sha256",
    ]


def test_a_server_without_range_support_sends_the_whole_file_again(server, tmp_path, capsys):
    archive = pix2pix_tar()
    server.files["/pix2pix/datasets/facades.tar.gz"] = archive
    server.ranges = False
    part = tmp_path / "cache" / "datasets" / "pix2pix-facades.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(archive[:7000])
    out = tmp_path / "d" / "facades"
    assert run(["data", "download", "pix2pix/facades", "--out", str(out)]) == 0
    assert server.requests == [("/pix2pix/datasets/facades.tar.gz", "bytes=7000-")]
    assert f"sha256 {sha(archive)}" in capsys.readouterr().err
    assert (tmp_path / "cache" / "datasets" / "pix2pix-facades.tar.gz").read_bytes() == archive


def test_a_part_that_is_not_a_prefix_starts_over(server, tmp_path, capsys):
    """A part as long as the file (or longer): the server answers 416, the download starts over."""
    archive = pix2pix_tar()
    server.files["/pix2pix/datasets/facades.tar.gz"] = archive
    part = tmp_path / "cache" / "datasets" / "pix2pix-facades.tar.gz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * (len(archive) + 5))
    assert run(["data", "download", "pix2pix/facades", "--out", str(tmp_path / "d" / "f")]) == 0
    assert [r[1] for r in server.requests] == [f"bytes={len(archive) + 5}-", None]


# --- unsafe archives ------------------------------------------------------------------------------


def _tar_with(*members: tarfile.TarInfo, good: bool = True) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        if good:
            data = _png((64, 32), 1)
            info = tarfile.TarInfo("facades/train/1.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return out.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


@pytest.mark.parametrize(
    "member, problem",
    [
        (_member("facades/../../evil.txt", size=3), "'..' component"),
        (_member("/tmp/evil.txt", size=3), "absolute path"),
        (_member("facades/train/up", tarfile.SYMTYPE, "../../../etc/passwd"), "outside the dataset"),
        (_member("facades/train/abs", tarfile.SYMTYPE, "/etc/passwd"), "absolute path"),
        (_member("facades/train/hard", tarfile.LNKTYPE, "../outside"), "outside the dataset"),
        (_member("facades/train/fifo", tarfile.FIFOTYPE), "FIFO"),
        (_member("facades/train/dev", tarfile.CHRTYPE), "device"),
    ],
    ids=["dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out", "fifo", "device"],
)
def test_unsafe_tar_members_are_refused(server, tmp_path, capsys, member, problem):
    server.files["/pix2pix/datasets/facades.tar.gz"] = _tar_with(member)
    out = tmp_path / "d" / "facades"
    assert run(["data", "download", "pix2pix/facades", "--out", str(out)]) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and "refused" in err[0] and member.name in err[0] and problem in err[0]
    assert looks_like_nothing(tmp_path / "d")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "d" / "evil.txt").exists()


def test_a_link_inside_the_dataset_is_kept(server, tmp_path):
    link = _member("facades/train/2.png", tarfile.SYMTYPE, "1.png")
    server.files["/pix2pix/datasets/facades.tar.gz"] = _tar_with(link)
    out = tmp_path / "d" / "facades"
    assert run(["data", "download", "pix2pix/facades", "--out", str(out)]) == 0
    assert (out / "train" / "2.png").read_bytes() == (out / "train" / "1.png").read_bytes()


def test_zip_bomb_is_refused_before_writing(server, tmp_path, monkeypatch, capsys):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb/trainA/a.png", _png((32, 32), 1))
        zf.writestr("bomb/trainB/zeros.png", b"\0" * (8 << 20))  # 8 MiB that deflate to ~8 kB
    server.files["/bomb.zip"] = out.getvalue()
    registry(tmp_path, monkeypatch, **{"cyclegan/bomb": {"task": "cyclegan", "url": "bomb.zip", "splits": ["trainA"]}})
    assert run(["data", "download", "cyclegan/bomb", "--out", str(tmp_path / "d" / "bomb")]) == 1
    err = capsys.readouterr().err
    assert "refused: it declares more than" in err and "IMG2IMG_DATA_MAX_BYTES" in err
    assert looks_like_nothing(tmp_path / "d")


def test_zip_symlink_and_dotdot_are_refused(server, tmp_path, monkeypatch, capsys):
    for name, problem in (("../evil.png", "'..' component"), ("z/trainA/link", "symbolic link")):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            zf.writestr("z/trainA/a.png", _png((32, 32), 1))
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16) if "link" in name else 0
            zf.writestr(info, "../../../etc/passwd")
        server.files["/z.zip"] = out.getvalue()
        registry(tmp_path, monkeypatch, **{"cyclegan/z": {"task": "cyclegan", "url": "z.zip", "splits": ["trainA"]}})
        for leftover in (tmp_path / "cache" / "datasets").glob("*"):
            leftover.unlink()
        assert run(["data", "download", "cyclegan/z", "--out", str(tmp_path / "d" / "z")]) == 1
        err = capsys.readouterr().err
        assert problem in err and name in err
        assert looks_like_nothing(tmp_path / "d") and not (tmp_path / "evil.png").exists()


def test_an_archive_without_the_task_folders_is_refused(server, tmp_path, monkeypatch, capsys):
    server.files["/pix2pix/datasets/facades.tar.gz"] = _tar_with(_member("other/x.txt", size=1), good=False)
    assert run(["data", "download", "pix2pix/facades", "--out", str(tmp_path / "d" / "f")]) == 1
    err = capsys.readouterr().err
    assert "expected the folders train, found other" in err and "the archive was deleted" in err
    assert looks_like_nothing(tmp_path / "d")
    # Unverified and unusable: neither kept nor trusted on first use.
    assert list((tmp_path / "cache" / "datasets").iterdir()) == []
    good = pix2pix_tar()
    server.files["/pix2pix/datasets/facades.tar.gz"] = good
    assert run(["data", "download", "pix2pix/facades", "--out", str(tmp_path / "d" / "f")]) == 0
    assert f"sha256 {sha(good)}: unverified" in capsys.readouterr().err


# --- interruption and offline ---------------------------------------------------------------------


def test_sigterm_mid_download_leaves_no_dataset_and_the_next_run_resumes(server, tmp_path, capsys):
    archive = pix2pix_tar(n=12)
    path = "/pix2pix/datasets/facades.tar.gz"
    server.files[path] = archive
    server.block[path] = 2000
    out = tmp_path / "d" / "facades"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])
        ),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "img2img", "data", "download", "pix2pix/facades", "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.reached.wait(60), "the download never started"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert looks_like_nothing(tmp_path / "d")
    part = tmp_path / "cache" / "datasets" / "pix2pix-facades.tar.gz.part"
    held = part.stat().st_size if part.exists() else 0
    assert held <= 2000
    del server.block[path]
    server.release.set()
    assert run(["data", "download", "pix2pix/facades", "--out", str(out)]) == 0
    assert server.requests[-1][1] == (f"bytes={held}-" if held else None)
    assert f"sha256 {sha(archive)}" in capsys.readouterr().err
    assert len(list((out / "train").iterdir())) == 12


def test_offline_refuses_to_download_but_uses_the_cached_archive(server, tmp_path, monkeypatch, capsys):
    archive = pix2pix_tar()
    server.files["/pix2pix/datasets/facades.tar.gz"] = archive
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run(["data", "download", "pix2pix/facades", "--out", str(tmp_path / "d" / "f")]) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and "offline: HF_HUB_OFFLINE is set" in err[0]
    assert "img2img data download pix2pix/facades" in err[0] and "models pull" not in err[0]
    assert server.requests == [] and looks_like_nothing(tmp_path / "d")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert run(["data", "download", "pix2pix/facades", "--out", str(tmp_path / "d" / "f")]) == 0
    monkeypatch.setenv("IMG2IMG_OFFLINE", "1")
    assert run(["data", "download", "pix2pix/facades", "--out", str(tmp_path / "d" / "g")]) == 0
    assert len(server.requests) == 1 and (tmp_path / "d" / "g" / "train" / "1.png").is_file()
    assert run(["data", "download", "pix2pix/facades", "--out", str(tmp_path / "d" / "g")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_registry_lists_every_reference_dataset():
    from img2img.data.fetch import load_datasets

    names = set(load_datasets())
    pix2pix = {"facades", "cityscapes", "maps", "edges2shoes", "edges2handbags", "night2day"}
    cyclegan = {"apple2orange", "summer2winter_yosemite", "horse2zebra", "monet2photo", "cezanne2photo",
                "ukiyoe2photo", "vangogh2photo", "maps", "cityscapes", "facades", "iphone2dslr_flower",
                "ae_photos", "grumpifycat"}  # fmt: skip
    assert names == {f"pix2pix/{n}" for n in pix2pix} | {f"cyclegan/{n}" for n in cyclegan}
    entries = load_datasets()
    assert entries["pix2pix/night2day"].url.endswith("/pix2pix/datasets/night2day.tar.gz")
    assert entries["cyclegan/horse2zebra"].url.endswith("/cyclegan/datasets/horse2zebra.zip")


# --- data prepare cityscapes ------------------------------------------------------------------------


def _cityscapes_zips(tmp_path: Path, drop: str | None = None) -> tuple[Path, Path]:
    stems = [("train", "aachen", "aachen_000000_000019"), ("train", "bonn", "bonn_000001_000019"),
             ("val", "lindau", "lindau_000000_000019")]  # fmt: skip
    gt, left = tmp_path / "gtFine_trainvaltest.zip", tmp_path / "leftImg8bit_trainvaltest.zip"
    with zipfile.ZipFile(gt, "w") as g, zipfile.ZipFile(left, "w") as l:
        for i, (split, city, stem) in enumerate(stems):
            g.writestr(f"gtFine/{split}/{city}/{stem}_gtFine_color.png", _solid((64, 32), (200, 0, i * 60)))
            g.writestr(f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png", _solid((64, 32), (1, 1, 1)))
            if stem != drop:
                l.writestr(f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", _solid((64, 32), (0, 150, i * 60)))
    return gt, left


def _solid(size, colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def test_prepare_cityscapes_builds_the_reference_layout(tmp_path, capsys):
    gt, left = _cityscapes_zips(tmp_path)
    out = tmp_path / "cityscapes"
    assert (
        run(["data", "prepare", "cityscapes", "--gtfine", str(gt), "--leftimg8bit", str(left), "--out", str(out)]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["test", "testA", "testB", "train", "trainA", "trainB"]
    assert sorted(p.name for p in (out / "train").iterdir()) == ["0.jpg", "1.jpg"]
    assert [p.name for p in (out / "test").iterdir()] == ["0.jpg"]  # val -> test, as the reference
    pair = Image.open(out / "train" / "1.jpg")
    assert pair.size == (512, 256)
    photo, label = pair.getpixel((128, 128)), pair.getpixel((384, 128))
    assert max(abs(a - b) for a, b in zip(photo, (0, 150, 60))) <= 2  # A: the photo (bonn)
    assert max(abs(a - b) for a, b in zip(label, (200, 0, 60))) <= 2  # B: its colour labels
    assert Image.open(out / "trainA" / "1_A.jpg").size == (256, 256)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_prepare_cityscapes_refuses_a_file_without_its_partner(tmp_path, capsys):
    gt, left = _cityscapes_zips(tmp_path, drop="bonn_000001_000019")
    out = tmp_path / "cityscapes"
    assert (
        run(["data", "prepare", "cityscapes", "--gtfine", str(gt), "--leftimg8bit", str(left), "--out", str(out)]) == 1
    )
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and "bonn_000001_000019_leftImg8bit.png" in err[0] and "nothing was written" in err[0]
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert (
        run(["data", "prepare", "cityscapes", "--gtfine", str(left), "--leftimg8bit", str(left), "--out", str(out)])
        == 1
    )
    assert "no gtFine/*/*/*_gtFine_color.png files" in capsys.readouterr().err


def test_a_mirror_replaces_the_host_and_a_bad_one_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("IMG2IMG_DATA_BASE_URL", "https://mirror.example/gans/")
    assert run(["data", "list", "--json"]) == 0
    urls = {row["name"]: row["url"] for row in map(json.loads, capsys.readouterr().out.splitlines())}
    assert urls["cyclegan/maps"] == "https://mirror.example/gans/cyclegan/datasets/maps.zip"
    monkeypatch.setenv("IMG2IMG_DATA_BASE_URL", "not a url")
    assert run(["data", "list"]) == 1
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and "$IMG2IMG_DATA_BASE_URL 'not a url' is not a usable URL" in err[0]
