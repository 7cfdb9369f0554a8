"""A competition folder's marker: the competition it holds, written by paddy sample, followed through resizes."""

from paddy.cli.main import main
from paddy.data.competition import COMPETITION
from paddy.data.marker import MARKER, folder_competition, read_marker, write_competition
from paddy.data.resize import resize_folder
from paddy.data.sample import make_sample


def test_sample_names_its_competition_and_a_resized_copy_inherits_it(tmp_path):
    data = make_sample(tmp_path / "data", n_train=12, n_test=3, size=(24, 32))
    assert folder_competition(data) == COMPETITION
    small = tmp_path / "small"
    resize_folder(data, small, 16, workers=1, progress=False)
    assert folder_competition(small) == COMPETITION  # read through the copy's source
    write_competition(data, "another-one")
    assert folder_competition(small) == "another-one" and read_marker(data) == {"competition": "another-one"}


def test_unknown_folders_have_no_competition(tmp_path):
    assert folder_competition(None) == "" and folder_competition(tmp_path) == ""
    (tmp_path / MARKER).write_text("not json")
    assert folder_competition(tmp_path) == ""


def test_cli_sample_takes_a_competition(tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["sample", str(out), "--n-train", "12", "--n-test", "2", "--size", "24x32",
                 "--competition", "my-comp"]) == 0
    assert folder_competition(out) == "my-comp"


def test_an_array_cache_reads_its_competition_from_its_source(tmp_path):
    from paddy.data.array_cache import write_array_cache

    data = make_sample(tmp_path / "data", n_train=12, n_test=3, size=(24, 32), competition_slug="cache-comp")
    cache = tmp_path / "cache"
    write_array_cache(data, cache, (16, 16), "squish", workers=1)
    assert folder_competition(cache) == "cache-comp"
