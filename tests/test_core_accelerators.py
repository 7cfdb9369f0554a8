"""Accelerator facts and the start-up GPU check: shapes Kaggle knows, retired ones, torch arch lists."""

import pytest

from paddy.core.accelerators import ACCELERATORS, GPUS, accelerator, arch_supports, budget_gb, check_machine_shape
from paddy.core.errors import ConfigError
from paddy.core.runtime import check_gpus, exit_unless_gpus_usable, gpu_problem

TORCH_2X_CU12 = ["sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]  # a build without Pascal (the P100 is sm_60)


def test_every_figure_names_its_source():
    assert all(g.source and g.usable_gb > 0 for g in GPUS.values())
    assert all(a.source for a in ACCELERATORS.values())
    assert budget_gb("t4x2") == 15.0 and budget_gb("cpu") is None
    assert accelerator("T4x2").count == 2 and accelerator("t4x2").machine_shape == "NvidiaTeslaT4"


def test_retired_p100_is_refused_naming_t4x2():
    with pytest.raises(ConfigError, match="retired.*NvidiaTeslaT4"):
        check_machine_shape("NvidiaTeslaP100")
    with pytest.raises(ConfigError, match="t4x2"):
        accelerator("p100")
    assert check_machine_shape(" nvidiateslat4 ") == "NvidiaTeslaT4"


@pytest.mark.parametrize(("capability", "arch_list", "runs"), [
    ((7, 5), TORCH_2X_CU12, True),
    ((6, 0), TORCH_2X_CU12, False),  # the P100 on a build without sm_60: dies at the first CUDA op
    ((8, 9), ["sm_80", "sm_86"], True),  # same major, later minor: binary compatible
    ((9, 0), ["sm_80", "compute_80"], True),  # PTX JIT
    ((7, 5), ["sm_80", "compute_80"], False),
    ((7, 5), [], False),
])
def test_arch_support_follows_cuda_compatibility(capability, arch_list, runs):
    assert arch_supports(capability, arch_list) is runs


def test_gpu_problem_is_one_line_naming_the_gpu_and_the_way_on():
    assert gpu_problem([("Tesla T4", (7, 5))] * 2, TORCH_2X_CU12, expected=2) is None
    line = gpu_problem([("Tesla P100-PCIE-16GB", (6, 0))], TORCH_2X_CU12, expected=2)
    assert "P100" in line and "sm_60" in line and "NvidiaTeslaT4" in line and "\n" not in line
    assert "sees none" in gpu_problem([], [], expected=2)


def test_check_gpus_on_this_cpu_machine():
    assert check_gpus(expected=0).startswith("no GPU")
    with pytest.raises(ConfigError, match="sees none"):
        check_gpus(expected=2)
    with pytest.raises(SystemExit, match="^paddy: asked for 2 GPU"):
        exit_unless_gpus_usable(expected=2)


def test_plan_budget_defaults_to_its_accelerators_gpu(tmp_path):
    from paddy.core.plan import load_plan, plan_to_toml

    path = tmp_path / "p.toml"
    path.write_text('[[members]]\narch = "resnet10t"\n')
    assert (load_plan(path).accelerator, load_plan(path).budget_gb) == ("t4x2", 15.0)
    path.write_text('accelerator = "h200"\n[[members]]\narch = "resnet10t"\n')
    assert load_plan(path).budget_gb == 139.0 and 'accelerator = "h200"' in plan_to_toml(load_plan(path))
    path.write_text('accelerator = "t4x2"\nbudget_gb = 12\n[[members]]\narch = "resnet10t"\n')
    assert load_plan(path).budget_gb == 12.0
    path.write_text('accelerator = "p100"\n[[members]]\narch = "resnet10t"\n')
    with pytest.raises(ConfigError, match="retired"):
        load_plan(path)
