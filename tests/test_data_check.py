"""paddy check: a clean sample passes; every kind of damage is named in one pass; the CLI's lines and exit codes."""

import shutil

import pandas as pd
import pytest

from paddy.cli.main import main
from paddy.core.errors import DataError
from paddy.data import competition
from paddy.data.check import check_data, require_valid


@pytest.fixture
def damaged(tiny_sample, tmp_path):
    """A private copy of the tiny sample to damage."""
    return shutil.copytree(tiny_sample, tmp_path / "data")


def _first(data, label):
    return sorted((data / competition.TRAIN_IMAGES / label).iterdir())[0]


def test_clean_sample_passes(tiny_sample, capsys):
    report = check_data(tiny_sample, progress=False)
    assert report.ok and report.problems == []
    assert (report.n_train_images, report.n_test_images) == (120, 16)
    assert require_valid(tiny_sample, progress=False).ok
    assert main(["check", str(tiny_sample)]) == 0
    assert "ok (120 train and 16 test images" in capsys.readouterr().out


def test_every_damage_named_in_one_pass(damaged, capsys):
    truncated = _first(damaged, "blast")
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    deleted = _first(damaged, "normal")
    deleted.unlink()
    shutil.copy(_first(damaged, "hispa"), damaged / competition.TRAIN_IMAGES / "hispa" / "999999.jpg")
    moved = _first(damaged, "tungro")
    moved.rename(damaged / competition.TRAIN_IMAGES / "blast" / moved.name)
    (damaged / competition.TEST_IMAGES / "299999.jpg").write_bytes((damaged / "test_images/200001.jpg").read_bytes())
    (damaged / competition.TEST_IMAGES / "200002.jpg").unlink()

    problems = check_data(damaged, progress=False).problems
    text = "\n".join(problems)
    assert f"blast/{truncated.name}: unreadable or truncated" in text
    assert f"train.csv lists {deleted.name} but train_images/normal/{deleted.name} is missing" in text
    assert "train_images/hispa/999999.jpg is not listed in train.csv" in text
    assert f"train_images/blast/{moved.name} is in folder blast but train.csv says tungro" in text
    assert "test_images/299999.jpg is not listed in sample_submission.csv" in text
    assert "sample_submission.csv lists 200002.jpg but test_images/200002.jpg is missing" in text
    assert len(problems) == 6, problems

    assert main(["check", str(damaged)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 6 and all(line.startswith("paddy check: ") for line in err)
    with pytest.raises(DataError, match="6 problem"):
        require_valid(damaged, progress=False)


def test_duplicates_empty_folder_and_stray_file(damaged):
    train = pd.read_csv(damaged / competition.TRAIN_CSV, dtype=str)
    pd.concat([train, train.iloc[:1]]).to_csv(damaged / competition.TRAIN_CSV, index=False)
    for path in (damaged / competition.TRAIN_IMAGES / "bacterial_panicle_blight").iterdir():
        path.unlink()
    (damaged / competition.TRAIN_IMAGES / "notes.txt").write_text("stray")
    text = "\n".join(check_data(damaged, progress=False).problems)
    assert f"train.csv lists {train.image_id[0]} more than once" in text
    assert "train_images/bacterial_panicle_blight/ is an empty label folder" in text
    assert "train_images/notes.txt is a file outside any label folder" in text


def test_a_row_with_no_label_says_so(damaged):
    # Was "... is in folder blast but train.csv says " (nothing after "says") and "train_images//<id> is missing".
    train = pd.read_csv(damaged / competition.TRAIN_CSV, dtype=str, keep_default_na=False)
    on_disk, gone = train.image_id[0], train.image_id[1]
    train.loc[:1, "label"] = ""
    train.to_csv(damaged / competition.TRAIN_CSV, index=False)
    next((damaged / competition.TRAIN_IMAGES).glob(f"*/{gone}")).unlink()
    text = "\n".join(check_data(damaged, progress=False).problems)
    assert f"train.csv has no label for {on_disk}" in text and f"train.csv has no label for {gone}" in text
    assert "says \n" not in text + "\n" and "//" not in text


def test_missing_parts_and_wrong_columns(damaged):
    shutil.rmtree(damaged / competition.TEST_IMAGES)
    (damaged / competition.SAMPLE_SUBMISSION_CSV).unlink()
    train = pd.read_csv(damaged / competition.TRAIN_CSV, dtype=str)
    train.rename(columns={"variety": "kind"}).to_csv(damaged / competition.TRAIN_CSV, index=False)
    problems = check_data(damaged, progress=False).problems
    assert "sample_submission.csv is missing: a competition folder needs it" in problems
    assert "test_images/ is missing: a competition folder needs it" in problems
    assert "train.csv has columns image_id,label,kind,age; expected image_id,label,variety,age" in problems


def test_csv_that_is_not_csv(damaged, capsys):
    (damaged / competition.TRAIN_CSV).write_bytes(_first(damaged, "blast").read_bytes())  # a JPEG named .csv
    (damaged / competition.SAMPLE_SUBMISSION_CSV).write_text('"image_id,label\n200001.jpg,"x\n\x00\x01')
    problems = check_data(damaged, progress=False).problems
    assert any(p.startswith("train.csv ") for p in problems), problems
    assert any(p.startswith("sample_submission.csv ") for p in problems), problems
    assert main(["check", str(damaged)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("train.csv" in line for line in err) and len(err) == len(problems)


def test_a_png_posing_as_jpeg(damaged):
    from PIL import Image

    target = _first(damaged, "hispa")
    Image.new("RGB", (8, 8)).save(target, format="PNG")
    assert check_data(damaged, progress=False).problems == [
        f"train_images/hispa/{target.name}: is a PNG image, not a JPEG"]


def test_output_is_capped_with_a_count(damaged, capsys):
    for path in sorted((damaged / competition.TRAIN_IMAGES / "normal").iterdir()):
        path.unlink()  # 20 listed images missing and one empty folder
    for path in sorted((damaged / competition.TRAIN_IMAGES / "blast").iterdir())[:5]:
        path.unlink()
    n = len(check_data(damaged, progress=False).problems)
    assert n > 20
    assert main(["check", str(damaged)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 21 and err[-1] == f"paddy check: ... and {n - 20} more problems"


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_not_a_competition_folder_is_one_line(tmp_path, capsys, make):
    data = tmp_path / "data"
    if make == "empty":
        data.mkdir()
    elif make == "file":
        data.write_text("x")
    assert main(["check", str(data)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(data) in err[0]
    with pytest.raises(DataError, match="1 problem"):
        require_valid(data, progress=False)


def test_parallel_decode_matches_serial(damaged):
    for label in ("blast", "hispa"):
        path = _first(damaged, label)
        path.write_bytes(path.read_bytes()[:300])
    serial = check_data(damaged, workers=1, progress=False).problems
    assert serial == check_data(damaged, workers=4, progress=False).problems
    assert len(serial) == 2
