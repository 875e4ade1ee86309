"""The CPU class names and their override, without torch (the CLI checks ``$IMG2IMG_CPU_CLASS``
before any command, and ``--help`` must not import torch). img2img.runtime.devices.cpu_class is the
one function that decides the class; this module only names the classes and parses the
variable."""

from __future__ import annotations

import os

from img2img.errors import UsageError

# The CPU classes the defaults distinguish, from the least capable. ``avx512_bf16`` and ``amx``
# have native bfloat16 (AVX512-BF16 instructions, AMX tiles); on the others oneDNN emulates it.
CPU_CLASSES = ("other", "avx2", "avx512", "avx512_bf16", "amx")
NATIVE_BF16_CLASSES = ("avx512_bf16", "amx")
ENV_CPU_CLASS = "IMG2IMG_CPU_CLASS"


def cpu_class_from_environment() -> str | None:
    """The class ``$IMG2IMG_CPU_CLASS`` names (lower case), or None when it is unset or empty.
    Raises UsageError naming the variable and the valid classes for any other value."""
    value = os.environ.get(ENV_CPU_CLASS, "").strip()
    if not value:
        return None
    if value.lower() not in CPU_CLASSES:
        raise UsageError(f"{ENV_CPU_CLASS}={value!r} is no CPU class; valid: {', '.join(CPU_CLASSES)}")
    return value.lower()
