"""Submissions: rows matched by image_id, every check, and the log's atomic rewrite."""

import pandas as pd
import pytest

from paddy.core.errors import DataError
from paddy.data import competition
from paddy.ensemble.log import LOG_COLUMNS, append_log, read_log, write_log
from paddy.ensemble.submission import (
    build_submission,
    check_submission,
    check_submission_file,
    read_sample_submission,
)

VOCAB = ("blast", "hispa", "normal")


def sample_frame(ids=("200003.jpg", "200001.jpg", "200002.jpg")):
    return pd.DataFrame({"image_id": list(ids), "label": [""] * len(ids)})


def write_data(folder, ids=("200003.jpg", "200001.jpg", "200002.jpg")):
    folder.mkdir(parents=True, exist_ok=True)
    sample_frame(ids).to_csv(folder / competition.SAMPLE_SUBMISSION_CSV, index=False)
    return folder


def test_build_matches_by_id_and_keeps_sample_order():
    sample = sample_frame()
    frame = build_submission(sample, ["200001.jpg", "200002.jpg", "200003.jpg"], ["blast", "hispa", "normal"])
    assert list(frame.columns) == ["image_id", "label"]
    assert list(frame["image_id"]) == ["200003.jpg", "200001.jpg", "200002.jpg"]
    assert list(frame["label"]) == ["normal", "blast", "hispa"]
    check_submission(frame, sample, VOCAB)


@pytest.mark.parametrize("ids, labels, words", [
    (["200001.jpg", "200002.jpg"], ["blast", "hispa"], "1 missing"),
    (["200001.jpg", "200002.jpg", "200003.jpg", "200009.jpg"], ["blast"] * 4, "1 extra"),
    (["200001.jpg", "200001.jpg", "200003.jpg"], ["blast"] * 3, "more than once"),
    (["200001.jpg", "200002.jpg"], ["blast"], "2 image ids"),
])
def test_build_refuses_other_ids(ids, labels, words):
    with pytest.raises(DataError, match=words):
        build_submission(sample_frame(), ids, labels)


@pytest.mark.parametrize("change, words", [
    (lambda f: f.rename(columns={"label": "disease"}), "columns"),
    (lambda f: f.assign(extra=1), "columns"),
    (lambda f: f.iloc[:2], "1 missing"),
    (lambda f: pd.concat([f, f.iloc[:1]], ignore_index=True), "more than once"),
    (lambda f: f.assign(image_id=["200001.jpg", "200002.jpg", "209999.jpg"]), "1 extra"),
    (lambda f: f.assign(label=["blast", "rust", "normal"]), "outside the vocab"),
    (lambda f: f.assign(label=["blast", "", "normal"]), "outside the vocab"),
])
def test_check_submission_catches(change, words):
    good = sample_frame().assign(label=["blast", "hispa", "normal"])
    check_submission(good, sample_frame(), VOCAB)
    with pytest.raises(DataError, match=words) as error:
        check_submission(change(good), sample_frame(), VOCAB)
    assert "\n" not in str(error.value)


def test_check_file_defaults_to_the_competition(tmp_path):
    ids = [f"{competition.FIRST_TEST_ID + i}.jpg" for i in range(competition.N_TEST)]
    frame = pd.DataFrame({"image_id": ids[::-1], "label": ["tungro"] * len(ids)})
    frame.to_csv(tmp_path / "ok.csv", index=False)
    assert len(check_submission_file(tmp_path / "ok.csv")) == competition.N_TEST
    frame.iloc[:-1].to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(DataError, match="short.csv.*1 missing"):
        check_submission_file(tmp_path / "short.csv")
    with pytest.raises(DataError, match="missing"):
        check_submission_file(tmp_path / "nothing.csv")


def test_check_file_against_a_data_folder(tmp_path):
    data = write_data(tmp_path / "data")
    sample_frame().assign(label=["blast", "hispa", "normal"]).to_csv(tmp_path / "s.csv", index=False)
    check_submission_file(tmp_path / "s.csv", data=data, vocab=VOCAB)
    with pytest.raises(DataError, match="outside the vocab"):
        check_submission_file(tmp_path / "s.csv", data=data, vocab=("blast", "hispa"))
    with pytest.raises(DataError, match="disagree on image ids"):
        check_submission_file(tmp_path / "s.csv")  # the real competition has other ids


def test_read_sample_submission(tmp_path):
    sample = read_sample_submission(write_data(tmp_path / "data", ids=("000123.jpg", "200001.jpg")))
    assert list(sample["image_id"]) == ["000123.jpg", "200001.jpg"]  # ids stay text
    with pytest.raises(DataError, match="sample_submission.csv is missing"):
        read_sample_submission(tmp_path / "nowhere")


def test_log_appends_rewrites_and_keeps_extra_columns(tmp_path):
    log = tmp_path / "sub" / "log.csv"
    assert list(read_log(log).columns) == list(LOG_COLUMNS) and len(read_log(log)) == 0
    append_log(log, {"file": "a.csv", "members": "r1(arch=x); r2", "valid_accuracy": 0.75, "n_valid": 12,
                     "message": 'first, "quoted" try'})
    append_log(log, {"event": "submitted", "file": "a.csv", "submission_ref": 123})
    frame = read_log(log)
    assert list(frame.columns) == list(LOG_COLUMNS) + ["submission_ref"]
    assert list(frame["file"]) == ["a.csv", "a.csv"]
    assert frame.loc[0, "message"] == 'first, "quoted" try' and frame.loc[0, "valid_accuracy"] == 0.75
    assert frame["public_score"].isna().all() and frame.loc[0, "time"].endswith("+00:00")
    frame.loc[1, "public_score"] = 0.9827
    write_log(log, frame)
    again = read_log(log)
    assert again.loc[1, "public_score"] == pytest.approx(0.9827) and again.loc[0, "members"] == "r1(arch=x); r2"
    assert sorted(p.name for p in log.parent.iterdir()) == ["log.csv"]  # no temporary files left behind
