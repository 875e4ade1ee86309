"""Every image the package reads goes through the one decoder (img2img.files.imageio).

A reader that opens or converts images itself (Pillow's ``Image.open`` or ``convert``,
torchvision's ``read_image``/``decode_image``, OpenCV, imageio, scikit-image's ``io``) gets
other pixels for the same file: Pillow's ``convert("RGB")`` clips 16-bit images to white and
float images to black. This test reads the package's source and fails on any such call outside
the decoder module, so a new reader (a data tool, video frames) cannot bypass it unnoticed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import img2img

PACKAGE = Path(img2img.__file__).parent
DECODER_MODULES = {"files/imageio.py"}  # relative to the package
# Modules whose import means decoding images some other way.
_FOREIGN_DECODERS = ("torchvision.io", "cv2", "imageio", "skimage.io", "matplotlib.image", "imageio.v3", "av")
_FOREIGN_FUNCTIONS = {"read_image", "decode_image", "decode_jpeg", "decode_png", "imread"}


def bypasses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each way ``source`` reads or converts images outside the decoder."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr, base = node.func.attr, node.func.value
            base_name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
            if attr == "open" and base_name == "Image":
                found.append((node.lineno, "Image.open"))
            elif attr == "convert":
                found.append((node.lineno, ".convert("))
            elif attr == "exif_transpose":
                found.append((node.lineno, "ImageOps.exif_transpose"))
            elif attr in _FOREIGN_FUNCTIONS and base_name not in ("imageio",):
                found.append((node.lineno, f".{attr}("))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in _FOREIGN_DECODERS:
                    found.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module in _FOREIGN_DECODERS:
                found.append((node.lineno, f"from {node.module} import"))
            if node.module == "PIL" and any(a.name == "ImageOps" for a in node.names):
                found.append((node.lineno, "from PIL import ImageOps"))
    return found


def test_the_checker_sees_each_kind_of_bypass():
    samples = {
        "from PIL import Image\nImage.open('x.png')\n": "Image.open",
        "import PIL.Image\nPIL.Image.open('x.png')\n": "Image.open",
        "def f(image):\n    return image.convert('RGB')\n": ".convert(",
        "from torchvision.io import read_image\n": "from torchvision.io import",
        "import torchvision\ntorchvision.io.decode_image(b'')\n": ".decode_image(",
        "import cv2\n": "import cv2",
        "from PIL import ImageOps\n": "from PIL import ImageOps",
    }
    for source, what in samples.items():
        assert [w for _, w in bypasses(source)] == [what], source
    assert bypasses("from img2img.files.imageio import read_image\nread_image('x.png')\n") == []


def test_no_module_reads_or_converts_images_outside_the_decoder():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in DECODER_MODULES:
            continue
        offenders += [f"img2img/{rel}:{line}: {what}" for line, what in bypasses(path.read_text(encoding="utf-8"))]
    assert not offenders, "images read or converted outside img2img/files/imageio.py:\n" + "\n".join(offenders)
