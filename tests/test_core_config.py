"""TrainConfig and plan files check themselves."""

import pytest

from paddy.core.config import TrainConfig, parse_size, parse_tta
from paddy.core.errors import ConfigError
from paddy.core.plan import load_plan, parse_plan, plan_to_toml


def test_sizes_parse_to_height_width():
    assert parse_size(224) == (224, 224)
    assert parse_size("320,224") == (320, 224)
    assert parse_size([640, 480]) == (640, 480)
    for bad in (0, "-3", "a,b", "1,2,3"):
        with pytest.raises(ConfigError):
            parse_size(bad)


def test_tta_specs():
    assert parse_tta("4,0.25") == ("fastai", 4, 0.25)
    assert parse_tta("flip") == ("flip", 0, 0.0)
    with pytest.raises(ConfigError):
        parse_tta("4")


def test_accum_must_be_power_of_two_within_batch():
    assert TrainConfig(arch="resnet10t", accum=4).micro_bs == 16
    for bad in (3, 128, "x"):
        with pytest.raises(ConfigError):
            TrainConfig(arch="resnet10t", accum=bad)
    assert TrainConfig(arch="resnet10t", accum="auto").accum == "auto"


def test_targets_and_weights():
    config = TrainConfig(arch="resnet10t", targets="label,variety", target_weights="1,0.5")
    assert config.targets == ("label", "variety") and config.target_weights == (1.0, 0.5)
    assert TrainConfig(arch="resnet10t", targets="label,variety").target_weights == (1.0, 1.0)
    for targets, weights in (("label,age", ""), ("label,variety", "1"), ("label,variety", "1,-1"), ("variety", "")):
        with pytest.raises(ConfigError):
            TrainConfig(arch="resnet10t", targets=targets, target_weights=weights)


def test_replace_never_mutates_and_rechecks():
    config = TrainConfig(arch="resnet10t")
    changed = config.replace(accum=2)
    assert config.accum == 1 and changed.accum == 2
    with pytest.raises(ConfigError):
        config.replace(bs=-1)


def test_from_dict_refuses_unknown_and_missing_keys():
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.from_dict({"arch": "resnet10t", "epochz": 3})
    with pytest.raises(ConfigError, match="arch"):
        TrainConfig.from_dict({"size": 3})


def test_plan_defaults_apply_and_roundtrip(tmp_path):
    plan = parse_plan({"defaults": {"epochs": 2}, "members": [{"arch": "resnet10t", "size": 64},
                                                               {"arch": "convnext_atto", "size": 64}]})
    assert [m.epochs for m in plan.members] == [2, 2]
    path = tmp_path / "plan.toml"
    path.write_text(plan_to_toml(plan))
    assert load_plan(path).members == plan.members


def test_plan_keeps_a_varying_split_through_toml(tmp_path):
    plan = parse_plan({"defaults": {"split_seed": "none"}, "members": [{"arch": "resnet10t", "num_workers": 0}]})
    assert plan.members[0].split_seed is None
    path = tmp_path / "plan.toml"
    path.write_text(plan_to_toml(plan))
    assert load_plan(path).members == plan.members  # split_seed stays None, not the default 42


def test_plan_errors():
    with pytest.raises(ConfigError, match="unknown top-level"):
        parse_plan({"member": []})
    with pytest.raises(ConfigError, match="no \\[\\[members\\]\\]"):
        parse_plan({})
    with pytest.raises(ConfigError, match="run name"):
        parse_plan({"members": [{"arch": "resnet10t"}, {"arch": "resnet10t"}]})
    with pytest.raises(ConfigError, match="not found"):
        load_plan("no-such-plan")


def test_run_names_tell_multi_target_twins_apart():
    single = TrainConfig(arch="resnet10t", size=64, item_size=480)
    multi = single.replace(targets=("label", "variety"), target_weights=())
    assert single.run_name == "resnet10t-squish480x480-64x64"
    assert multi.run_name == "resnet10t-squish480x480-64x64-variety"
    assert parse_plan({"members": [single.to_dict(), multi.to_dict()]}).members == (single, multi)
    unset = TrainConfig(arch="resnet10t", size=64)  # item size from the data, once a run knows its data
    assert unset.run_name == "resnet10t-squishauto-64x64" and unset.to_dict()["item_size"] is None
    assert parse_plan({"members": [unset.to_dict()]}).members == (unset,)


def test_plan_values_of_the_wrong_type_are_config_errors():
    # TOML lets a plan say epochs = 1.5 or pretrained = "false": refused here, not a traceback mid-run.
    for key, bad in (("epochs", 1.5), ("bs", "64"), ("bs", 16.5), ("seed", "1"), ("split_seed", 1.5),
                     ("pretrained", "false"), ("finetune", 0)):
        with pytest.raises(ConfigError, match=key):
            parse_plan({"members": [{"arch": "resnet10t", key: bad}]})


def test_plan_members_and_defaults_must_be_tables():
    for data in ({"defaults": 3, "members": [{"arch": "resnet10t"}]}, {"members": [1]}, {"members": {"arch": "x"}}):
        with pytest.raises(ConfigError, match="table"):
            parse_plan(data)
