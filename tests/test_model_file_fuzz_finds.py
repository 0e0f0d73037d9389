"""Inputs the model-file fuzzer (tests/fuzz_model.py) found, kept so that they stay fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

import fastgd
from fastgd import ModelFileError

FOUND = sorted((Path(__file__).parent / "data" / "model-fuzz").glob("*.npz"))


def test_the_findings_are_here() -> None:
    assert [p.name for p in FOUND] == [
        "member-flag-compressed-patch.npz",  # zipfile: NotImplementedError (flag bit 5)
        "member-flag-strong-encryption.npz",  # zipfile: NotImplementedError (flag bit 6)
        "member-name-bad-utf8.npz",  # zipfile: UnicodeDecodeError
        "member-offset-outside-file.npz",  # seek: OSError (EINVAL)
    ]


@pytest.mark.parametrize("path", FOUND, ids=[p.stem for p in FOUND])
def test_fuzzer_finding_is_a_model_file_error(path: Path) -> None:
    with pytest.raises(ModelFileError, match="is not a valid fastgd model file"):
        fastgd.load(path)
