"""The estimate's calibration: least-squares fit, leave-one-out, calibration files."""

import json

import pytest

from paddy.core.errors import ConfigError
from paddy.probe import calibrate


def rows_from(total_intercept, total_slope, alloc_ratio, traced=(1000.0, 4000.0, 9000.0, 16000.0)):
    return [{"arch": "a", "size": "224x224", "accum": 1, "micro_bs": 64, "traced_alloc_mb": x,
             "peak_allocated_mb": alloc_ratio * x, "process_total_mb": total_intercept + total_slope * x}
            for x in traced]


def test_fit_recovers_the_coefficients_of_exact_rows():
    calibration = calibrate.fit(rows_from(800.0, 1.1, 1.05), gpu="t4")
    assert calibration.total_intercept_mb == pytest.approx(800.0)
    assert calibration.total_slope == pytest.approx(1.1)
    assert calibration.alloc_ratio == pytest.approx(1.05)
    assert calibration.total_mb(2000.0) == pytest.approx(3000.0) and calibration.rows == 4


def test_leave_one_out_uses_only_the_other_rows():
    rows = rows_from(800.0, 1.1, 1.05)
    assert all(total == pytest.approx(r["process_total_mb"]) for r, _, total in calibrate.leave_one_out(rows))
    rows[0] = {**rows[0], "process_total_mb": rows[0]["process_total_mb"] + 500}  # an outlier
    out = calibrate.leave_one_out(rows)
    assert out[0][2] == pytest.approx(800.0 + 1.1 * 1000.0)  # its own estimate ignores its own figure
    assert out[1][2] != pytest.approx(rows[1]["process_total_mb"])  # the others' fits include it


def test_fit_needs_two_distinct_traces():
    with pytest.raises(ConfigError, match="two or more"):
        calibrate.fit(rows_from(800.0, 1.1, 1.05, traced=(1000.0, 1000.0)))


def test_files_round_trip_and_fall_back(tmp_path):
    path = calibrate.calibration_path("t4", tmp_path)
    calibrate.append_rows(path, rows_from(800.0, 1.1, 1.05)[:2])
    calibrate.append_rows(path, rows_from(800.0, 1.1, 1.05)[2:])
    assert len(calibrate.read_rows(path)) == 4
    assert calibrate.load_calibration("t4", tmp_path).gpu == "t4"
    assert calibrate.load_calibration("a100-80", tmp_path / "none") == calibrate.H200_FALLBACK
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"arch": "x"}]}))
    with pytest.raises(ConfigError, match="lacks"):
        calibrate.read_rows(bad)


def test_the_committed_fallback_is_the_fit_of_the_committed_h200_rows():
    rows = calibrate.read_rows(calibrate.calibration_path("h200"))
    fitted, fallback = calibrate.fit(rows, gpu="h200"), calibrate.H200_FALLBACK
    assert fitted.total_intercept_mb == pytest.approx(fallback.total_intercept_mb, abs=0.01)
    assert fitted.total_slope == pytest.approx(fallback.total_slope, abs=1e-5)
    assert fitted.alloc_ratio == pytest.approx(fallback.alloc_ratio, abs=1e-5)
    assert fitted.rows == fallback.rows
