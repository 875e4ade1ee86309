"""`--help` a person reads: every command's help fits a screen at 100 columns, flags show no
type, the commands come in the order a user meets them, and each help names its docs page, which
documents every option the help shortens."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from img2img.cli import main

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 45


def _commands():
    """Every command and group, as the words after `img2img` ("" for img2img itself)."""
    import typer.main

    from img2img.cli._app import app

    def walk(command, path):
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return [(" ".join(path), command) for path, command in walk(typer.main.get_command(app), [])]


COMMANDS = [key for key, _ in _commands()]


def _help(args, capsys, monkeypatch, columns=100):
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.delenv("LINES", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--help"])
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("key", COMMANDS)
def test_help_fits_a_screen_and_names_its_docs_page(key, capsys, monkeypatch):
    out = _help(key.split(), capsys, monkeypatch)
    lines = out.rstrip("\n").split("\n")
    assert len(lines) <= MAX_LINES, f"img2img {key} --help: {len(lines)} lines\n{out}"
    assert "<bool>" not in out, out
    assert max(len(line.rstrip()) for line in lines) <= 100
    page = re.search(r"Docs: (docs/\S+\.md)", out)
    assert page, out
    assert (ROOT / page.group(1)).is_file(), page.group(1)
    nav = (ROOT / "mkdocs.yml").read_text()
    assert page.group(1).removeprefix("docs/") in nav, f"{page.group(1)} is not in mkdocs.yml's nav"


def test_commands_are_listed_in_the_order_a_user_meets_them(capsys, monkeypatch):
    out = _help([], capsys, monkeypatch)
    listed = re.findall(r"^│ (\w+) ", out.split("Commands")[1], flags=re.M)
    assert listed == ["data", "train", "translate", "eval", "export", "push", "models", "convert", "report"]


@pytest.mark.parametrize("key", [key for key, command in _commands() if not hasattr(command, "commands")])
def test_every_option_is_on_the_commands_docs_page(key):
    """What --help leaves out (the compact panel shows names and defaults only) the docs page
    says: every option of the command is named on it."""
    from img2img.cli._help import DOCS

    command = dict(_commands())[key]
    page = (ROOT / DOCS[key]).read_text()
    for param in command.params:
        for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            if opt.startswith("--") and opt != "--help":
                assert f"`{opt}`" in page, f"{opt} of img2img {key} is not on {DOCS[key]}"


def test_compact_panel_keeps_each_option_with_its_default(capsys, monkeypatch):
    out = _help(["train", "pix2pix"], capsys, monkeypatch)
    flat = " ".join(out.split())
    for shown in (
        "--preprocess resize_and_crop",
        "--netg unet_256",
        "--dropout/--no-dropout on",
        "--lr 0.0002",
        "--lr-policy linear",
        "--amp/--no-amp auto",
        "--seed INT",
        "--tensorboard",
    ):
        assert shown in flat, shown
    # A line break never falls between an option and its default: every line of the panel
    # starts with an option.
    panel = out.split("More options", 1)[1].split("╰", 1)[0].split("\n")[1:-1]
    assert len(panel) >= 5
    for line in panel:
        content = re.sub(r"^[\w ]+:", "", line.strip("│ ")).strip()
        assert content.startswith("--"), line
    out = _help(["train", "cyclegan"], capsys, monkeypatch)
    assert "--netg resnet_9blocks" in out and "--norm instance" in out and "--gan-mode lsgan" in out


def test_the_help_shows_what_it_hides_from_the_table_only_there(capsys, monkeypatch):
    """Options in the compact panel leave the table (once) and come back for parsing."""
    out = _help(["translate"], capsys, monkeypatch)
    table, compact = out.split("More options")
    assert "--tile-stats" not in table and "--tile-stats thumbnail" in compact
    assert "--out-dir" in table and "--out-dir" not in compact
    # The options are untouched: parsing still takes them.
    import typer.main

    from img2img.cli._app import app

    command = typer.main.get_command(app).commands["translate"]
    assert all(not getattr(p, "hidden", False) for p in command.params)


def test_readme_keeps_the_set_up_first_and_short():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 400
    sections = re.findall(r"^## (.+)$", readme, flags=re.M)
    assert sections[0] == "Set-up"
    block = readme.split("## Set-up", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert block.splitlines() == [
        'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[dev]"',
        "img2img translate examples/inputs/coffee.png --model photo2sketch -o out.png",
        "python -m pytest -q",
    ]
    # Every page the README links to exists.
    for link in re.findall(r"\]\(((?:docs|examples)/[^)#]+)", readme):
        assert (ROOT / link).exists(), link
