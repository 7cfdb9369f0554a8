"""`--estimate --check`'s builders, on CPU: calibration rows from measured tries, GPU folder names."""

from paddy.core.config import TrainConfig
from paddy.probe.calibrate import ROW_KEYS, append_rows, read_rows
from paddy.probe.check import calibration_rows, gpu_key
from paddy.probe.search import ProbeReport, TryResult


def test_gpu_key_names_a_calibration_folder():
    assert gpu_key("NVIDIA H200") == "h200" and gpu_key("Tesla T4") == "t4"
    assert gpu_key("NVIDIA A100-SXM4-80GB") == "a100-sxm4-80gb"


def test_measured_tries_become_calibration_rows_with_the_trace_of_their_epoch(tiny_sample, tmp_path):
    config = TrainConfig(arch="resnet10t", size=32, item_size=(48, 48), bs=16, pretrained=False, finetune=False,
                         epochs=1)
    tries = tuple(TryResult("resnet10t", "32x32", accum, 16 // accum, peak_allocated_mb=100.0 + accum,
                            peak_reserved_mb=150.0, process_total_mb=900.0 + accum, device="cuda (stub)")
                  for accum in (1, 2))
    failed = TryResult("resnet10t", "32x32", 4, 4, oom=True, error="killed")  # no figures: no row
    report = ProbeReport(tries + (failed,), {config.run_name: 1}, 16.0, "cuda")
    rows = calibration_rows(tiny_sample, [config], report)
    assert [r["accum"] for r in rows] == [1, 2] and all(k in r for r in rows for k in ROW_KEYS)
    assert rows[0]["train_images"] > 0 and rows[0]["traced_alloc_mb"] >= rows[1]["traced_alloc_mb"] > 0
    assert read_rows(append_rows(tmp_path / "t4" / "calibration.json", rows)) == rows  # what the estimator reads
