"""The reference fixtures ship inside the repository, intact."""

from __future__ import annotations

import hashlib

from conftest import REFERENCE_FIXTURES, REPO_ROOT


def test_reference_fixtures_are_read_from_the_repository_only(reference_fixtures, reference_manifest):
    assert reference_fixtures == REFERENCE_FIXTURES
    assert reference_fixtures.resolve().is_relative_to(REPO_ROOT.resolve() / "tests")
    for case in reference_manifest["cases"]:
        assert (reference_fixtures / case / "checkpoint.pth").is_file()
        assert (reference_fixtures / case / "io.safetensors").is_file()


def test_reference_fixtures_match_their_checksums(reference_fixtures):
    lines = (reference_fixtures / "SHA256SUMS").read_text().splitlines()
    assert len(lines) >= 6
    for line in lines:
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256((reference_fixtures / name).read_bytes()).hexdigest() == digest, name
