"""The package's shape (docs/layout.md): no module imports another module's private names.
The layers and cycles are import-linter's contracts in pyproject.toml (CI runs lint-imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import img2img

PACKAGE = Path(img2img.__file__).parent


def private_imports(root: Path = PACKAGE) -> list[str]:
    """``file:line: from MODULE import _name`` for every private name of another img2img module
    imported under img2img/ (dunders such as __version__ are public)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("img2img"):
                for alias in node.names:
                    submodule = root.parent.joinpath(*node.module.split("."), alias.name)
                    if submodule.with_suffix(".py").is_file() or submodule.is_dir():
                        continue  # a private module of the package: import-linter's contract
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(
                            f"{path.relative_to(root.parent)}:{node.lineno}: from {node.module} import {alias.name}"
                        )
    return found


def test_no_module_imports_another_modules_private_names():
    assert private_imports() == []


def test_the_check_sees_a_private_import(tmp_path):
    package = tmp_path / "img2img"
    package.mkdir()
    (package / "a.py").write_text("from img2img.b import _helper, public, __version__\nfrom img2img import _c\n")
    (package / "_c.py").write_text("")
    assert private_imports(package) == ["img2img/a.py:1: from img2img.b import _helper"]
