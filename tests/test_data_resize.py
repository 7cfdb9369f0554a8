"""paddy resize: same layout and aspect, CSVs along, incremental, atomic, parallel = serial, and every bad input."""

import filecmp
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from paddy.cli.main import main
from paddy.core.errors import ConfigError, DataError
from paddy.data import competition
from paddy.data.check import check_data
from paddy.data.resize import resize_folder, resize_image, target_size


def _images(folder):
    return sorted(p.relative_to(folder) for p in folder.glob("*_images/**/*.jpg"))


def _tree(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def test_copy_is_a_valid_smaller_competition_folder(tiny_sample, tmp_path):
    out = tmp_path / "small"
    summary = resize_folder(tiny_sample, out, 32, workers=1, progress=False)
    assert (summary.resized, summary.skipped, summary.csvs) == (136, 0, 2)
    assert _images(out) == _images(tiny_sample)
    for rel in _images(out)[:10]:
        with Image.open(out / rel) as image:
            assert (image.format, image.size) == ("JPEG", (24, 32))  # 48x64 keeps its aspect
    for name in (competition.TRAIN_CSV, competition.SAMPLE_SUBMISSION_CSV):
        assert filecmp.cmp(tiny_sample / name, out / name, shallow=False)
    assert check_data(out, progress=False).ok
    assert not [p for p in out.rglob(".*") if p.name != ".paddy-resize.json"]  # no temp files left behind


def test_incremental(tiny_sample, tmp_path):
    data = shutil.copytree(tiny_sample, tmp_path / "data")
    out = tmp_path / "small"
    resize_folder(data, out, 32, workers=1, progress=False)
    again = resize_folder(data, out, 32, workers=1, progress=False)
    assert (again.resized, again.skipped) == (0, 136)
    changed = data / "test_images" / "200003.jpg"
    later = (out / "test_images" / "200003.jpg").stat().st_mtime + 10
    os.utime(changed, (later, later))  # the original is newer than its copy
    (out / "train_images" / "blast").joinpath(sorted(os.listdir(data / "train_images" / "blast"))[0]).unlink()
    third = resize_folder(data, out, 32, workers=1, progress=False)
    assert (third.resized, third.skipped) == (2, 134)
    other = resize_folder(data, out, 16, workers=1, progress=False)
    assert (other.resized, other.skipped) == (136, 0)  # another max_size: nothing is up to date
    with Image.open(out / "test_images" / "200001.jpg") as image:
        assert max(image.size) == 16


def test_interrupted_resize_at_a_new_size_resumes_and_redoes_the_old_size(tiny_sample, tmp_path, monkeypatch):
    out = tmp_path / "small"
    resize_folder(tiny_sample, out, 32, workers=1, progress=False)
    save, calls = Image.Image.save, []

    def save_then_interrupt(image, *args, **kwargs):  # Pillow's save, cut short like a Ctrl-C after 5 images
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return save(image, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        resize_folder(tiny_sample, out, 16, workers=1, progress=False)
    monkeypatch.setattr(Image.Image, "save", save)
    again = resize_folder(tiny_sample, out, 16, workers=1, progress=False)
    # Progress is recorded as it goes: the 5 copies made at 16 px are kept, the 131 still at 32 px are redone.
    assert (again.resized, again.skipped) == (131, 5)
    for rel in _images(out):
        with Image.open(out / rel) as image:
            assert max(image.size) == 16, rel


def test_parallel_equals_serial(tiny_sample, tmp_path):
    resize_folder(tiny_sample, tmp_path / "one", 20, workers=1, progress=False)
    resize_folder(tiny_sample, tmp_path / "two", 20, workers=2, progress=False)
    for rel in _images(tmp_path / "one"):
        assert filecmp.cmp(tmp_path / "one" / rel, tmp_path / "two" / rel, shallow=False), rel


def test_target_size():
    assert target_size((480, 640), 256) == (192, 256)
    assert target_size((640, 480), 256) == (256, 192)
    assert target_size((100, 50), 256) == (100, 50)  # never enlarged
    assert target_size((3, 1000), 10) == (1, 10)


def test_draft_decode_close_to_full_decode(tmp_path):
    from paddy.data.sample import draw_image, grain_tile

    rng = np.random.default_rng(0)
    src = tmp_path / "big.jpg"
    draw_image("brown_spot", "Ponni", (480, 640), rng, grain_tile((480, 640), rng)).save(src, quality=90)
    assert resize_image(src, tmp_path / "small.jpg", 128) is None
    with Image.open(src) as image:
        full = np.asarray(image.convert("RGB").resize((96, 128), Image.BILINEAR), dtype=float)
    small = np.asarray(Image.open(tmp_path / "small.jpg"), dtype=float)
    assert small.shape == full.shape
    assert np.abs(small - full).mean() < 6  # draft mode (1/4-scale DCT) changes pixels only a little


def test_corrupt_jpeg_reported_rest_done(tiny_sample, tmp_path, capsys):
    data = shutil.copytree(tiny_sample, tmp_path / "data")
    bad = data / "test_images" / "200005.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match=r"1 of 136 images could not be read.*200005\.jpg.*other 135"):
        resize_folder(data, tmp_path / "small", 32, workers=2, progress=False)
    assert len(_images(tmp_path / "small")) == 135
    assert (tmp_path / "small" / competition.TRAIN_CSV).is_file()
    assert main(["resize", str(data), str(tmp_path / "small2"), "--max-size", "32", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "200005.jpg" in err[0]
    assert len(_images(tmp_path / "small2")) == 135


def test_rerun_after_a_corrupt_image_retries_only_that_image_and_drops_its_stale_copy(tiny_sample, tmp_path):
    data, out = shutil.copytree(tiny_sample, tmp_path / "data"), tmp_path / "small"
    resize_folder(data, out, 32, workers=1, progress=False)
    bad = data / "test_images" / "200005.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DataError, match="200005"):
        resize_folder(data, out, 16, workers=1, progress=False)
    assert not (out / "test_images" / "200005.jpg").exists()  # its 32 px copy would pass for a 16 px one
    shutil.copyfile(tiny_sample / "test_images" / "200005.jpg", bad)  # the user replaces the broken file
    again = resize_folder(data, out, 16, workers=1, progress=False)
    assert (again.resized, again.skipped) == (1, 135)
    assert check_data(out, progress=False).ok


def test_out_inside_data_writes_nothing(tiny_sample, tmp_path, capsys):
    data = shutil.copytree(tiny_sample, tmp_path / "data")
    before = _tree(data)
    for out in (data / "small", data, data / "train_images" / "x"):
        with pytest.raises(DataError, match="inside"):
            resize_folder(data, out, 32, progress=False)
    assert main(["resize", str(data), str(data / "small"), "--max-size", "32"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert _tree(data) == before


@pytest.mark.parametrize("case", ["missing", "not_competition", "unwritable", "bad_csv", "out_is_file"])
def test_bad_input_one_line_exit_2_nothing_written(tiny_sample, tmp_path, capsys, case):
    data, out = tiny_sample, tmp_path / "out"
    if case == "missing":
        data = tmp_path / "nope"
    elif case == "not_competition":
        data = tmp_path / "plain"
        data.mkdir()
        (data / "train.csv").write_text("image_id,label,variety,age\n")
    elif case == "unwritable":
        (tmp_path / "a_file").write_text("x")
        out = tmp_path / "a_file" / "out"
    elif case == "bad_csv":
        data = shutil.copytree(tiny_sample, tmp_path / "data")
        (data / competition.TRAIN_CSV).write_bytes(b"\xff\xd8\xff\xe0 not a csv")
    elif case == "out_is_file":
        out.write_text("x")
    before = _tree(tmp_path)
    assert main(["resize", str(data), str(out), "--max-size", "32"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("paddy resize: error: ")
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("value", ["0", "-5", "abc"])
def test_max_size_not_positive(tiny_sample, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["resize", str(tiny_sample), str(tmp_path / "out"), "--max-size", value])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(ConfigError):
        resize_folder(tiny_sample, tmp_path / "out", 0)
    assert not (tmp_path / "out").exists()


def test_another_source_into_the_same_out_is_refused(tiny_sample, tmp_path, capsys):
    # Same names (100000.jpg, 200001.jpg...) in another folder: its copies must not pass for up to date.
    from paddy.data.sample import make_sample

    out = tmp_path / "small"
    resize_folder(tiny_sample, out, 32, workers=1, progress=False)
    other = make_sample(tmp_path / "other", n_train=120, n_test=16, size=(48, 64), seed=7)
    before = _tree(out)
    assert main(["resize", str(other), str(out), "--max-size", "32", "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "copies of" in err[0] and str(tiny_sample) in err[0]
    assert _tree(out) == before


def test_an_unreadable_marker_means_nothing_is_up_to_date(tiny_sample, tmp_path):
    out = tmp_path / "small"
    resize_folder(tiny_sample, out, 32, workers=1, progress=False)
    (out / ".paddy-resize.json").write_text("{not json")  # a disk-full or hand edit; was a JSONDecodeError traceback
    again = resize_folder(tiny_sample, out, 32, workers=1, progress=False)
    assert (again.resized, again.skipped) == (136, 0)


def test_a_rerun_drops_copies_whose_original_is_gone(tiny_sample, tmp_path):
    # A user fixes a wrong label by moving the image to its right folder: the copy must not stay in both.
    data, out = shutil.copytree(tiny_sample, tmp_path / "data"), tmp_path / "small"
    resize_folder(data, out, 32, workers=1, progress=False)
    moved = sorted((data / "train_images" / "bacterial_panicle_blight").iterdir())
    train = (data / competition.TRAIN_CSV).read_text()
    for path in moved:
        path.rename(data / "train_images" / "blast" / path.name)
        train = train.replace(f"{path.name},bacterial_panicle_blight,", f"{path.name},blast,")
    (data / competition.TRAIN_CSV).write_text(train)
    (data / "train_images" / "bacterial_panicle_blight").rmdir()
    (data / "test_images" / "200016.jpg").unlink()
    (data / competition.SAMPLE_SUBMISSION_CSV).write_text(
        (data / competition.SAMPLE_SUBMISSION_CSV).read_text().replace("200016.jpg,\n", ""))
    assert check_data(data, progress=False).ok
    again = resize_folder(data, out, 32, workers=1, progress=False)
    assert again.removed == len(moved) + 1
    assert _images(out) == _images(data)
    assert check_data(out, progress=False).ok
