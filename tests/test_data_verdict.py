"""Remembered checks: a folder that passed is not decoded again until a file of it changes."""

import shutil

import pytest

from paddy.cli.main import main
from paddy.core.errors import DataError
from paddy.data.verdict import cache_folder, is_known_valid, require_valid_once


@pytest.fixture
def sample_copy(tiny_sample, tmp_path):
    return shutil.copytree(tiny_sample, tmp_path / "data")


def test_a_clean_folder_is_decoded_once_until_a_file_changes(sample_copy):
    assert require_valid_once(sample_copy, progress=False).ok  # checked in full
    assert require_valid_once(sample_copy, progress=False) is None  # unchanged: not decoded again
    assert list(cache_folder().glob("*.txt"))  # under the (test's) home, never inside the data folder
    victim = sorted((sample_copy / "train_images").glob("*/*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:-200])  # truncated after the check
    assert not is_known_valid(sample_copy)
    with pytest.raises(DataError, match="truncated"):
        require_valid_once(sample_copy, progress=False)
    with pytest.raises(DataError):  # a folder with problems is checked every time
        require_valid_once(sample_copy, progress=False)


def test_paddy_check_remembers_a_clean_verdict(sample_copy, capsys):
    assert not is_known_valid(sample_copy)
    assert main(["check", str(sample_copy)]) == 0
    assert is_known_valid(sample_copy)
    (sample_copy / "train.csv").write_text((sample_copy / "train.csv").read_text() + "\n")
    assert not is_known_valid(sample_copy)  # an edited CSV brings the full check back
