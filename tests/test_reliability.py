"""What a hostile but realistic user meets: runs that would train on nothing, outputs in use, absurd numbers,
killed runs and what they leave. Every refusal is one line on stderr, exit 2, and nothing written."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paddy.cli.main import main
from paddy.core import lock
from paddy.data.resize import resize_folder

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--arch", "resnet10t", "--no-pretrained", "--size", "32", "--item-size", "48,48", "--epochs", "1",
         "--tta", "none", "--workers", "0"]


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


def _refused(capsys, argv, *words):
    """Run `paddy ARGV`: exit 2, nothing on stdout, one line on stderr holding every word."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", captured
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    for word in words:
        assert word in captured.err, captured.err
    return captured.err


# 3. Training on nothing.

def test_a_training_split_smaller_than_one_batch_is_refused_before_anything_is_written(tiny_sample, tmp_path,
                                                                                       capsys):
    before = _tree(tmp_path)
    _refused(capsys, ["train", tiny_sample, *TRAIN, "--bs", "100", "--out", tmp_path / "runs" / "R"],
             "the training split has 96 images, fewer than one batch of 100; lower --bs")
    assert _tree(tmp_path) == before


def test_a_plan_member_whose_bs_exceeds_the_training_split_is_refused_before_any_member_trains(tiny_sample,
                                                                                               tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text('[defaults]\nsize = 32\nitem_size = 48\nepochs = 1\npretrained = false\ntta = "none"\n'
                    'num_workers = 0\n\n[[members]]\narch = "resnet10t"\nbs = 8\n\n'
                    '[[members]]\narch = "resnet10t"\nname = "big"\nbs = 97\n')
    before = _tree(tmp_path)
    _refused(capsys, ["train", tiny_sample, "--plan", plan, "--runs", tmp_path / "runs"],
             "the training split has 96 images, fewer than one batch of 97")
    assert _tree(tmp_path) == before


# 4. Two runs, one output: the second is refused while the first holds the lock.

@pytest.mark.parametrize("verb", ["train", "resize", "sample"])
def test_an_output_in_use_is_refused(tiny_sample, tmp_path, capsys, verb):
    out = tmp_path / "out"
    argv = {"train": ["train", tiny_sample, *TRAIN, "--out", out],
            "resize": ["resize", tiny_sample, out, "--max-size", "16"],
            "sample": ["sample", out, "--n-train", "20", "--n-test", "2", "--size", "16x16"]}[verb]
    with lock.hold(out):
        before = _tree(tmp_path)
        _refused(capsys, argv, f"{out} is in use by another paddy process (PID {os.getpid()}")
        assert _tree(tmp_path) == before


# 6. Absurd sizes: bounded, refused before anything is written.

ABSURD = [
    (["sample", "{out}", "--size", "100000x100000"], "at most 8192 px"),
    (["sample", "{out}", "--n-train", "10000000"], "must be in 1 to 100000"),
    (["sample", "{out}", "--seed", "-1"], "must be in 0 to 4294967295"),
    (["train", "{data}", "--arch", "resnet10t", "--epochs", "1e20", "--out", "{out}"], "expected a whole number"),
    (["train", "{data}", "--arch", "resnet10t", "--epochs", "100000000000000000000", "--out", "{out}"],
     "must be in 1 to 1000"),
    (["train", "{data}", "--arch", "resnet10t", "--bs", "100000", "--out", "{out}"], "must be in 1 to 4096"),
    (["train", "{data}", "--arch", "resnet10t", "--lr", "1e300", "--out", "{out}"], "must be in 1e-08 to 10"),
    (["train", "{data}", "--arch", "resnet10t", "--lr", "nan", "--out", "{out}"], "must be in 1e-08 to 10"),
    (["train", "{data}", "--arch", "resnet10t", "--size", "100000", "--out", "{out}"], "at most 8192 px"),
    (["train", "{data}", "--arch", "resnet10t", "--seed", "-5", "--out", "{out}"], "must be in 0 to"),
    (["train", "{data}", "--arch", "resnet10t", "--workers", "1000", "--out", "{out}"], "must be in 0 to 64"),
    (["train", "{data}", "--arch", "resnet10t", "--tta", "100000,0.5", "--out", "{out}"], "N in 1 to 64"),
    (["train", "{data}", "--plan", "{plan}", "--runs", "{out}"], "epochs must be in 1 to 1000"),
    (["resize", "{data}", "{out}", "--max-size", "100000"], "must be in 1 to 8192"),
    (["resize", "{data}", "{out}", "--max-size", "64", "--workers", "100000"], "must be in 1 to 256"),
    (["probe", "{data}", "--arch", "resnet10t", "--bs", "100000"], "must be in 1 to 4096"),
    (["probe", "{data}", "--arch", "resnet10t", "--budget-gb", "1e30"], "must be in 0.1 to 1024"),
    (["probe", "{data}", "--arch", "resnet10t", "--max-accum", "4096"], "must be in 1 to 1024"),
]


@pytest.mark.parametrize("argv, words", ABSURD, ids=[" ".join(a[2:4]) or a[0] for a, _ in ABSURD])
def test_absurd_numbers_are_refused_in_one_line_before_anything_is_written(tiny_sample, tmp_path, capsys, argv,
                                                                           words):
    plan = tmp_path / "plan.toml"
    plan.write_text('[[members]]\narch = "resnet10t"\nepochs = 1000000000000\n')
    values = {"{data}": str(tiny_sample), "{out}": str(tmp_path / "out"), "{plan}": str(plan)}
    before = _tree(tmp_path)
    _refused(capsys, [values.get(a, a) for a in argv], words)
    assert _tree(tmp_path) == before


def test_every_numeric_flag_says_its_range_in_help():
    import argparse

    from paddy.cli.main import build_parser

    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    flags = {"sample": ("--n-train", "--n-test", "--size", "--seed"),
             "train": ("--epochs", "--lr", "--bs", "--seed", "--workers", "--size", "--item-size", "--tta"),
             "resize": ("--max-size", "--workers"),
             "probe": ("--bs", "--budget-gb", "--max-accum", "--max-images")}
    for verb, names in flags.items():
        helps = {o: a.help for a in verbs[verb]._actions for o in a.option_strings}
        for name in names:
            assert " to " in helps[name], (verb, name, helps[name])


# 7. Leftovers.

def test_a_half_drawn_sample_a_killed_run_left_goes_with_the_next_run(tmp_path, capsys):
    left = tmp_path / ".data.k1ll3d_0"  # atomic_dir's temporary, as `kill -9` leaves it
    (left / "train_images" / "blast").mkdir(parents=True)
    (left / "train_images" / "blast" / "100000.jpg").write_bytes(b"half")
    assert main(["sample", str(tmp_path / "data"), "--n-train", "20", "--n-test", "2", "--size", "16x16"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def _children(pid):
    """PIDs whose parent is `pid` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _copies(out):
    return [p for p in out.rglob("*.jpg") if not p.name.startswith(".")]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from /proc")
def test_a_killed_resize_leaves_no_workers_and_the_rerun_resumes(tmp_path):
    from paddy.data.sample import make_sample

    data = make_sample(tmp_path / "data", n_train=300, n_test=10, size=(480, 640))
    out = tmp_path / "small"
    run = subprocess.Popen([sys.executable, "-m", "paddy.cli.main", "resize", str(data), str(out), "--max-size", "64",
                            "--workers", "2"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers, deadline = [], time.monotonic() + 300
    while len(_copies(out)) < 20 and run.poll() is None and time.monotonic() < deadline:
        workers = sorted(set(workers) | set(_children(run.pid)))
        time.sleep(0.002)
    assert run.poll() is None, f"resize ended before it could be killed: {run.stderr.read()}"
    workers = sorted(set(workers) | set(_children(run.pid)))
    run.send_signal(signal.SIGKILL)
    run.wait()
    done = len(_copies(out))
    assert len(workers) >= 2 and 20 <= done < 310  # the resize pool (and any pool before it)
    deadline = time.monotonic() + 10
    while any(lock.pid_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphans = [w for w in workers if lock.pid_alive(w)]
    for pid in orphans:  # never leave them running, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not orphans, "resize workers outlived their parent"
    again = resize_folder(data, out, 64, workers=2, progress=False)  # the lock the killed run left is stale
    assert again.skipped >= done and again.resized + again.skipped == 310 and again.resized <= 310 - done
    shutil.rmtree(data)
