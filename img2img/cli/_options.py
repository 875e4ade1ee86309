"""Choices and option types shared by several commands."""

from __future__ import annotations

from enum import Enum


class Direction(str, Enum):
    AtoB = "AtoB"
    BtoA = "BtoA"


class Norm(str, Enum):
    batch = "batch"
    instance = "instance"
    none = "none"
