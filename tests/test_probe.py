"""The memory probe: accum search against a budget, OOM as "does not fit", memory freed, outputs, bad input."""

import math
import weakref

import numpy as np
import pytest
import torch

from paddy.cli.main import main
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError
from paddy.core.plan import load_plan, parse_plan
from paddy.probe import run as probe_run
from paddy.probe.meter import CPU_DEVICE_LABEL, is_out_of_memory, parse_gpu_processes, process_peak_mb
from paddy.probe.run import choose_accum, plan_with_accum
from paddy.probe.search import ProbeReport, TryResult, accum_candidates, chosen_accum, probe_config, search_accum
from paddy.probe.worker import TryRequest, fit_one_epoch, measure_try, probe_items, search_in_subprocess

MB = 2**20


def tiny_config(**changes):
    base = dict(arch="resnet10t", size=32, item_size=(48, 48), bs=16, num_workers=0, pretrained=False,
                finetune=False, epochs=1)
    return TrainConfig(**{**base, **changes})


def allocating_fit(mb_per_image):
    """A stand-in epoch that really holds mb_per_image MB per micro-batch image at its peak."""

    def fit(items, config, device):
        block = np.ones(config.micro_bs * mb_per_image * MB // 8)  # ones: the pages are really touched
        total = float(block.sum())
        del block
        return int(total > 0) * config.micro_bs, 0.01

    return fit


def test_accum_candidates_double_up_to_max_and_bs():
    assert accum_candidates(64, 16) == [1, 2, 4, 8, 16]
    assert accum_candidates(4, 16) == [1, 2, 4]
    with pytest.raises(ConfigError):
        accum_candidates(64, 3)


def test_search_picks_the_accum_whose_measured_peak_fits():
    config = tiny_config(bs=16)

    def measure(cfg):
        return measure_try(None, cfg, "cpu", fit=allocating_fit(8))

    tried = search_accum(measure, config, budget_gb=1e-6, max_accum=4)  # nothing fits: all measured
    peaks = [r.budget_mb for r in tried]
    assert [r.accum for r in tried] == [1, 2, 4] and not any(r.fits for r in tried)
    assert tried[0].device == CPU_DEVICE_LABEL and math.isnan(tried[0].peak_allocated_mb)
    assert peaks[0] > peaks[1] + 30 > peaks[2] + 60  # 128, 64, 32 MB held on top of the same baseline
    budget_gb = (peaks[0] + peaks[1]) / 2 / 1024  # between the accum-1 and accum-2 peaks
    chosen = search_accum(measure, config, budget_gb=budget_gb, max_accum=4)
    assert [r.accum for r in chosen] == [1, 2] and chosen_accum(chosen) == 2
    roomy = search_accum(measure, config, budget_gb=(peaks[0] + 100) / 1024, max_accum=4)
    assert chosen_accum(roomy) == 1 and len(roomy) == 1


def test_out_of_memory_errors_are_classified():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_list_gpu_processes_text_is_parsed():
    text = "GPU:0\nprocess      4242 uses    12191.000 MB GPU memory\nprocess        17 uses   100.500 MB GPU memory"
    assert parse_gpu_processes(text, 4242) == 12191.0
    assert parse_gpu_processes(text, 1) == 12291.5  # pid hidden (containers): everything listed
    assert math.isnan(parse_gpu_processes("GPU:0\nno processes are running", 1))


def spy_callbacks(refs, fail=False):
    """fastai callbacks: keep weak references to the learner and model; optionally run out of memory."""
    from fastai.callback.core import Callback

    class Spy(Callback):
        def before_fit(self):
            refs.extend([weakref.ref(self.learn), weakref.ref(self.learn.model)])

        def before_batch(self):
            if fail:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    return [Spy()]


def test_oom_inside_a_training_step_means_does_not_fit_and_frees_the_learner(tiny_sample):
    from paddy.data.folder import train_items

    config = probe_config(tiny_config())
    items = probe_items(train_items(tiny_sample), config)
    refs = []

    def fit(items, config, device):
        return fit_one_epoch(items, config, device, cbs=spy_callbacks(refs, fail=True))

    result = measure_try(items, config, "cpu", fit=fit).judged(16)
    assert result.oom and not result.fits and "out of memory" in result.error
    assert refs and all(ref() is None for ref in refs)


def test_a_real_try_trains_measures_and_releases_memory(tiny_sample):
    from paddy.data.folder import train_items

    config = probe_config(tiny_config(), accum=2)
    items = probe_items(train_items(tiny_sample), config)
    assert len(items) >= config.bs / (1 - config.valid_pct)  # the tiny class is repeated to a full batch
    refs = []

    def fit(items, config, device):
        return fit_one_epoch(items, config, device, cbs=spy_callbacks(refs))

    result = measure_try(items, config, "cpu", fit=fit).judged(16)
    assert result.fits and not result.oom and result.micro_bs == 8 and result.process_total_mb > 100
    assert refs and all(ref() is None for ref in refs)


def test_plan_with_accum_rewrites_members_without_mutating():
    plan = parse_plan({"members": [{"arch": "resnet10t", "name": "a"}, {"arch": "resnet10t", "name": "b"}]})
    rewritten = plan_with_accum(plan, {"a": 4, "b": 1})
    assert [m.accum for m in rewritten.members] == [4, 1] and [m.accum for m in plan.members] == [1, 1]
    with pytest.raises(ConfigError, match="b"):
        plan_with_accum(plan, {"a": 4, "b": None})


def test_probe_command_prints_writes_and_rewrites_the_plan(tiny_sample, tmp_path, capsys):
    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(load_plan("tiny").path.read_text())
    out = tmp_path / "probe"
    code = main(["probe", str(tiny_sample), "--plan", str(plan_path), "--no-subprocess", "--max-accum", "2",
                 "--budget-gb", "16", "--out", str(out), "--write-plan", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| resnet10t | 64x48 | 1 | 16 |" in printed and "cpu (peak RSS)" in printed
    assert "|----" not in printed  # no progress bars when stdout is not a terminal (a log file, a pipe)
    assert sorted(p.name for p in out.iterdir()) == ["probe.csv", "probe.md", "probe.png"]
    import pandas as pd

    frame = pd.read_csv(out / "probe.csv")
    assert list(frame["arch"]) == ["resnet10t", "test_convnext"] and frame["fits"].all()
    rewritten = load_plan(plan_path)
    assert [m.accum for m in rewritten.members] == [1, 1]  # test_convnext had accum 2: 1 fits
    assert rewritten.budget_gb == 16.0  # the budget the accum was chosen for, not the plan's 4 GB


@pytest.mark.parametrize("argv, message", [
    (["--arch", "resnet10tt", "--size", "32"], "unknown timm architecture"),
    (["--arch", "resnet10t", "--size", "0"], "size"),
    (["--arch", "resnet10t", "--size", "32", "--budget-gb", "0"], "budget-gb"),
    (["--arch", "resnet10t", "--size", "32", "--max-accum", "3"], "power of two"),
    (["--arch", "resnet10t"], "--size"),
    (["--arch", "resnet10t", "--size", "32", "--write-plan"], "--plan"),
    (["--plan", "tiny", "--write-plan"], "copy it first"),
    (["--plan", "tiny", "--bs", "32"], "--bs"),  # members set their own bs: the flag was silently ignored
])
def test_bad_input_is_one_line_exit_2_nothing_written(tiny_sample, tmp_path, capsys, argv, message):
    out, builtin = tmp_path / "out", load_plan("tiny").path.read_text()
    with pytest.raises(SystemExit) as exit_info:
        exit_code = main(["probe", str(tiny_sample), "--no-subprocess", "--out", str(out), *argv])
        raise SystemExit(exit_code)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and message in err
    assert not out.exists() and load_plan("tiny").path.read_text() == builtin


def test_a_data_folder_that_check_rejects_is_one_line_exit_2(tiny_sample, tmp_path, capsys):
    import shutil

    broken = tmp_path / "data"
    shutil.copytree(tiny_sample, broken)
    next((broken / "train_images").glob("*/*.jpg")).write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    code = main(["probe", str(broken), "--arch", "resnet10t", "--size", "32", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "problem" in err
    assert not out.exists()


def test_a_bad_device_is_refused_before_the_data_check(tmp_path, capsys):
    # The check decodes every JPEG (about a minute on the real data): a typo in --device should not wait for it.
    code = main(["probe", str(tmp_path / "nope"), "--arch", "resnet10t", "--size", "32", "--device", "cuda:x"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "device" in err and "nope" not in err


@pytest.mark.slow
def test_a_try_in_a_fresh_subprocess_reports_json(tiny_sample):
    config = probe_config(tiny_config())
    (result,) = search_in_subprocess(TryRequest(data=str(tiny_sample), device="cpu", configs=(config,)))
    assert result.device == CPU_DEVICE_LABEL and result.process_total_mb > 100 and not result.error


def test_choose_accum_says_out_of_memory_when_the_last_try_was_killed(monkeypatch):
    config = tiny_config(accum="auto", device="cpu")
    killed = TryResult(config.arch, "32", 2, 8, oom=True, error="killed for memory")
    report = ProbeReport((killed,), {config.run_name: None}, 1.0, "cpu")
    monkeypatch.setattr(probe_run, "probe_configs", lambda *args, **kwargs: report)
    with pytest.raises(ConfigError, match="runs out of memory even at accum 2") as error:
        choose_accum("data", config, budget_gb=1.0, max_accum=2, estimate=False)
    assert "nan" not in str(error.value)


def test_choose_accum_answers_auto_and_refuses_when_nothing_fits(tiny_sample):
    config = tiny_config(accum="auto", device="cpu")
    assert choose_accum(tiny_sample, config, budget_gb=16, max_accum=2, use_subprocess=False, estimate=False) == 1
    with pytest.raises(ConfigError, match="budget"):
        choose_accum(tiny_sample, config, budget_gb=1e-3, max_accum=2, use_subprocess=False, estimate=False)


def test_the_gpu_process_total_counts_the_cache_at_its_peak_not_as_it_is_now():
    # 600 MB context + 5000 MB cache now; the cache peaked at 9000 MB, so the card had to hold 9600 MB.
    assert process_peak_mb(5600.0, 5000.0, 9000.0) == 9600.0
    assert process_peak_mb(5600.0, 5000.0, 5000.0) == 5600.0  # nothing given back: the total as read
    assert math.isnan(process_peak_mb(math.nan, 5000.0, 9000.0))  # unknown stays unknown

