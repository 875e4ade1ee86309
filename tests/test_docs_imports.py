"""Every import in the documentation's Python examples names a module of this checkout and a name
it defines: the package was reorganised into layers (docs/layout.md), and an example that still
imports an old path (``img2img.inference``, ``Pix2PixConfig`` from the models layer) fails for the
first user who copies it. Only imports are checked; the examples themselves need data and time."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import img2img

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(img2img.__file__).resolve().parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name or None) for every import of img2img in the page's ```python blocks."""
    found = []
    for block in BLOCK.findall(path.read_text(encoding="utf-8")):
        # A block may hold "..." placeholders that are not Python; its import lines are.
        lines = [line for line in block.splitlines() if re.match(r"\s*(from|import)\s+img2img\b", line)]
        for node in ast.walk(ast.parse("\n".join(line.strip() for line in lines))):
            if isinstance(node, ast.ImportFrom):
                found += [(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(alias.name, None) for alias in node.names]
    return found


PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if doc_imports(p))


def test_the_docs_have_python_examples_to_check():
    assert (ROOT / "docs" / "python.md") in PAGES


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_import_in_the_docs_resolves_in_this_checkout(page):
    problems = []
    for module_name, name in doc_imports(page):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            problems.append(f"{module_name}: {exc}")
            continue
        # Another img2img installed in the same environment (an editable install of another
        # checkout) can supply a module this one lacks: it must come from this package.
        where = Path(module.__file__).resolve()
        if not where.is_relative_to(PACKAGE):
            problems.append(f"{module_name} comes from {where}, not from {PACKAGE}")
        elif name is not None and not hasattr(module, name):
            problems.append(f"{module_name} has no {name}")
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)
