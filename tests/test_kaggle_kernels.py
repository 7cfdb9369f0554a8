"""Kernel builders: metadata rules, slugs and titles, the scripts' content, rendering, and the kit's wheels."""

import ast
import json
import zipfile
from dataclasses import replace

import pytest
from slugify import slugify

from paddy.cli.main import main
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError
from paddy.core.plan import load_plan
from paddy.data.array_cache import write_array_cache
from paddy.data.competition import KAGGLE_INPUT
from paddy.kaggle.cache import cache_metadata, cache_ref
from paddy.kaggle.kernels import (
    CODE_FILE,
    KAGGLE_WORKING,
    METADATA_FILE,
    build_kernels,
    kernel_folders,
    kernel_metadata,
    kernel_titles,
    member_kernels,
    read_kernel_folder,
    render_kernels,
)
from paddy.kaggle.kit import (
    DATASET_METADATA_FILE,
    DEPENDENCY_WHEELS,
    KIT_DATASET,
    dependency_closure,
    dependency_requirements,
    package_kit,
    source_digest,
    wheel_digest,
)
from paddy.kaggle.names import SLUG_PATTERN, check_title, check_user, kernel_slug

PLAN_TOML = """description = "two tiny members"
budget_gb = 4

[defaults]
size = 64
item_size = 64
epochs = 1
bs = 16
pretrained = false
num_workers = 0

[[members]]
arch = "resnet10t"

[[members]]
arch = "convnext_atto"
name = "atto"
targets = ["label", "variety"]
"""


@pytest.fixture
def plan(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(PLAN_TOML)
    return load_plan(path)


def _assigned(script, name):
    """The literal value a script assigns to `name` (parsed, not executed)."""
    for node in ast.parse(script).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not assigned")


def test_kernel_metadata_has_every_field_kaggle_reads():
    meta = kernel_metadata("Someone", "paddy tiny 01 resnet10t", kernel_sources=["someone/x-kernel"],
                                   gpu=True, internet=False)
    assert meta == {
        "id": "someone/paddy-tiny-01-resnet10t", "title": "paddy tiny 01 resnet10t", "code_file": "kernel.py",
        "language": "python", "kernel_type": "script", "is_private": True, "enable_gpu": True, "enable_tpu": False,
        "machine_shape": "NvidiaTeslaT4", "enable_internet": False, "dataset_sources": ["someone/paddy-kit"],
        "competition_sources": ["paddy-disease-classification"], "kernel_sources": ["someone/x-kernel"],
        "model_sources": []}
    other = kernel_metadata("someone", "paddy tiny probe", competition_slug="titanic", gpu=False,
                                    internet=True, private=False)
    assert (other["competition_sources"], other["enable_gpu"], other["enable_internet"], other["is_private"]) == (
        ["titanic"], False, True, False)
    assert "machine_shape" not in other  # a CPU kernel asks for no machine


def test_gpu_kernels_ask_for_t4x2_by_name_and_check_what_they_got(plan):
    built = build_kernels(plan, "someone", lanes=1)
    shapes = [meta.get("machine_shape") for meta, _ in built.values()]
    assert shapes == ["NvidiaTeslaT4", "NvidiaTeslaT4", "NvidiaTeslaT4", None]
    scripts = [script for _, script in built.values()]
    assert all("exit_unless_gpus_usable(expected=2)" in s for s in scripts[:3])
    assert "exit_unless_gpus_usable" not in scripts[-1]
    for script in scripts[:3]:  # the check runs before any training starts
        assert script.index("exit_unless_gpus_usable(expected") > script.index("from paddy.core.runtime import")
        assert script.index("exit_unless_gpus_usable(expected") < script.index("with progress_bars(False)")
    assert build_kernels(plan, "someone", accelerator="nvidiateslat4")[next(iter(built))][0]["machine_shape"] == (
        "NvidiaTeslaT4")


@pytest.mark.parametrize(("shape", "words"), [("NvidiaTeslaP100", ["retired", "--accelerator NvidiaTeslaT4"]),
                                              ("TpuV38", ["retired", "TpuV5E8"]),
                                              ("TpuV232", ["retired", "--no-gpu"]),
                                              ("NvidiaA100", ["unknown", "NvidiaTeslaT4"])])
def test_cli_render_refuses_retired_and_unknown_accelerators_in_one_line(plan, tmp_path, capsys, shape, words):
    out = tmp_path / "kernels"
    code = main(["kernels", "render", str(plan.path), "--user", "someone", "--out", str(out), "--accelerator", shape])
    stdout, err = capsys.readouterr()
    assert code == 2 and stdout == "" and len(err.strip().splitlines()) == 1 and not out.exists()
    assert all(word in err for word in words), err


@pytest.mark.parametrize("title", ["paddy tiny 01 convnext_small.fb_in22k-squish480", "Paddy  Tiny -- Ensemble!",
                                   "paddy road-to-the-top 03 swinv2_large_window12", "x" * 50])
def test_slug_is_what_kaggle_derives_from_the_title(title):
    slug = check_title(title)
    assert slug == slugify(title) == kernel_slug(title)
    assert SLUG_PATTERN.match(slug)


@pytest.mark.parametrize("title", ["abcd", "x" * 51, "!!!!!!!", "a . b"])
def test_titles_kaggle_refuses_are_config_errors(title):
    with pytest.raises(ConfigError, match="title"):
        check_title(title)


@pytest.mark.parametrize("user", ["", "two words", "-lead", "a/b", "name."])
def test_bad_usernames_are_refused(user):
    with pytest.raises(ConfigError, match="--user"):
        check_user(user)


def test_titles_stay_unique_and_short_for_long_member_names():
    members = [TrainConfig(arch="convnext_small.fb_in22k", size=(256, 192), item_size=(480, 360), seed=s)
               for s in range(12)]
    probe, titles, ensemble = kernel_titles("road-to-the-top", members)
    assert len(set(titles)) == 12 and all(5 <= len(t) <= 50 for t in [probe, *titles, ensemble])
    assert len({check_title(t) for t in titles}) == 12


def test_build_kernels_probe_members_ensemble(plan):
    built = build_kernels(plan, "someone", lanes=1)
    slugs = list(built)
    assert slugs[0] == "paddy-tiny-probe" and slugs[-1] == "paddy-tiny-ensemble" and len(slugs) == 4
    member_ids = [f"someone/{s}" for s in slugs[1:3]]
    ensemble_meta, ensemble_text = built["paddy-tiny-ensemble"]
    assert ensemble_meta["kernel_sources"] == member_ids
    assert all(not built[s][0]["kernel_sources"] for s in slugs[:3])
    # The probe and members train on the GPU; the ensemble only averages saved probabilities: no GPU quota spent.
    assert [built[s][0]["enable_gpu"] for s in slugs] == [True, True, True, False]
    runs = _assigned(ensemble_text, "RUNS")
    assert runs == [f"/kaggle/input/{s}/{m.run_name}" for s, m in zip(slugs[1:3], plan.members)]
    assert "ensemble_runs(RUNS, find_data(DATA)" in ensemble_text


def test_a_plan_with_folds_gets_one_kernel_per_member_and_fold(plan):
    folded = replace(plan, members=(plan.members[0].replace(folds=3), plan.members[1]))
    built = build_kernels(folded, "someone")
    slugs = list(built)
    assert len(slugs) == 1 + 3 + 1 + 1
    fold_slugs = [s for s in slugs if s.endswith(("-f0", "-f1", "-f2"))]
    assert len(fold_slugs) == 3
    for fold, slug in enumerate(fold_slugs):
        text = built[slug][1]
        assert f"train_member(find_data(DATA), config, OUT / config.run_name, fold={fold}, budget_gb=4.0," in text
        assert TrainConfig.from_dict(_assigned(text, "CONFIG")).folds == 3
    meta, text = built[slugs[-1]]
    assert meta["kernel_sources"] == [f"someone/{s}" for s in slugs[1:-1]]
    name = folded.members[0].run_name
    assert _assigned(text, "FOLDS") == {name: [f"/kaggle/input/{s}/{name}/fold-{f}" for f, s in enumerate(fold_slugs)]}
    assert _assigned(text, "RUNS") == [f"/kaggle/input/{slugs[4]}/{folded.members[1].run_name}"]
    assert "fit='equal'" in text  # one member has no OOF rows: nothing to fit on
    all_folded = replace(plan, members=tuple(m.replace(folds=2) for m in plan.members))
    assert "fit='caruana'" in list(build_kernels(all_folded, "someone").values())[-1][1]


def test_fold_titles_keep_their_fold_when_names_are_long():
    members = [TrainConfig(arch="convnext_small.fb_in22k", size=(256, 192), item_size=(480, 360), folds=5)]
    _, titles, _ = kernel_titles("road-to-the-top", members)
    trainers = member_kernels(titles, members)
    assert [t[2] for t in trainers] == [0, 1, 2, 3, 4]
    assert all(t[0].endswith(f" f{t[2]}") and len(t[0]) <= 50 for t in trainers)
    assert len({check_title(t[0]) for t in trainers}) == 5
def test_two_lanes_a_kernel_on_t4x2(plan):
    three = replace(plan, members=(*plan.members, plan.members[0].replace(name="third")))
    built = build_kernels(three, "someone")  # NvidiaTeslaT4: two GPUs, so two members a kernel
    slugs = list(built)
    assert slugs[1:3] == ["paddy-tiny-01-02-resnet10t-squish64x64-64x64", "paddy-tiny-03-third"]
    lanes_text = built[slugs[1]][1]
    assert [TrainConfig.from_dict(m) for m in _assigned(lanes_text, "MEMBERS")] == list(three.members[:2])
    assert "train_plan_lanes(find_data(DATA), plan, OUT, lanes=2, choose_accum=choose_accum)" in lanes_text
    assert "budget_gb=4.0, accelerator='t4x2')" in lanes_text
    assert "CONFIG" in built[slugs[2]][1]  # the odd one out: an ordinary member kernel
    ensemble_meta, ensemble_text = built[slugs[-1]]
    assert ensemble_meta["kernel_sources"] == [f"someone/{s}" for s in slugs[1:3]]
    assert _assigned(ensemble_text, "RUNS") == [f"/kaggle/input/{slugs[1]}/{three.members[0].run_name}",
                                                f"/kaggle/input/{slugs[1]}/atto", f"/kaggle/input/{slugs[2]}/third"]
    assert len(build_kernels(three, "someone", gpu=False)) == 5  # no GPU: one lane, a kernel per member
    with pytest.raises(ConfigError, match="needs 3 GPUs"):
        build_kernels(three, "someone", lanes=3)


def test_member_script_carries_the_resolved_config(plan):
    built = build_kernels(plan, "someone", lanes=1)
    for slug, member in zip(list(built)[1:3], plan.members):
        text = built[slug][1]
        assert TrainConfig.from_dict(_assigned(text, "CONFIG")) == member
        assert "train_run(find_data(DATA), config, OUT / config.run_name, budget_gb=4.0," in text
        assert "choose_accum=choose_accum" in text
    probe_text = built["paddy-tiny-probe"][1]
    assert [TrainConfig.from_dict(m) for m in _assigned(probe_text, "MEMBERS")] == list(plan.members)
    assert "run_probe(" in probe_text and "budget_gb=4.0" in probe_text


def test_scripts_are_thin_valid_python_that_install_offline(plan):
    kernels = [*build_kernels(plan, "someone", competition_slug="paddy-disease-classification").values(),
               *build_kernels(plan, "someone", lanes=1).values()]
    for meta, text in kernels:
        compile(text, meta["code_file"], "exec")
        assert len(text.splitlines()) <= 41  # 40, and the GPU check
        assert '"--no-index"' in text and 'glob.glob(str(Path(KIT) / "paddy_kit-*.whl"))' in text
        assert '"-r", str(Path(KIT) / "requirements.txt")' in text
        assert _assigned(text, "KIT") == "/kaggle/input/paddy-kit"
        assert _assigned(text, "DATA") == "/kaggle/input/paddy-disease-classification"


def test_render_writes_folders_that_read_back(plan, tmp_path):
    out = tmp_path / "kernels"
    folders, removed = render_kernels(plan, "someone", out=out, lanes=1)
    assert removed == []
    assert [f.name for f in folders] == list(build_kernels(plan, "someone", lanes=1))
    for folder in folders:
        meta = read_kernel_folder(folder)
        assert (folder / meta["code_file"]).read_text() == build_kernels(plan, "someone", lanes=1)[folder.name][1]
    ordered = kernel_folders(out)
    assert ordered[-1].name == "paddy-tiny-ensemble" and len(ordered) == 4
    # Rendered again with two lanes (the default on GPU T4 x2): one kernel trains both, the member folders go.
    folders, removed = render_kernels(plan, "someone", out=out)
    assert [f.name for f in folders] == list(build_kernels(plan, "someone")) and len(removed) == 2


def test_render_again_with_fewer_members_removes_their_old_folders_only(plan, tmp_path):
    out = tmp_path / "kernels"
    first, _ = render_kernels(plan, "someone", out=out, lanes=1)
    user_folder = out / "paddy-tiny-notes"  # the same prefix, but not written by render
    user_folder.mkdir()
    (user_folder / "kernel.py").write_text("print('mine')\n")
    (user_folder / METADATA_FILE).write_text("{}")
    edited = first[2]  # a member folder the user put a file into
    (edited / "notes.txt").write_text("keep me")
    smaller = replace(plan, members=plan.members[:1])
    folders, removed = render_kernels(smaller, "someone", out=out, lanes=1)
    assert removed == [] and edited.is_dir()  # a folder holding more than render wrote is left alone
    (edited / "notes.txt").unlink()
    folders, removed = render_kernels(smaller, "someone", out=out, lanes=1)
    assert removed == [edited] and not edited.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([f.name for f in folders] + [user_folder.name])


def test_read_kernel_folder_refuses_broken_folders(plan, tmp_path):
    folder = render_kernels(plan, "someone", out=tmp_path)[0][0]
    meta = json.loads((folder / METADATA_FILE).read_text())
    (folder / METADATA_FILE).write_text(json.dumps({**meta, "title": "another title entirely"}))
    with pytest.raises(ConfigError, match="slug of the title"):
        read_kernel_folder(folder)
    (folder / CODE_FILE).unlink()
    (folder / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="code_file"):
        read_kernel_folder(folder)
    with pytest.raises(ConfigError, match="render"):
        kernel_folders(tmp_path / "nothing")


def test_cli_render_bad_user_is_one_line_and_writes_nothing(plan, tmp_path, capsys):
    out = tmp_path / "kernels"
    assert main(["kernels", "render", str(plan.path), "--user", "not a user", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--user" in err
    assert not out.exists()
    assert main(["kernels", "render", str(plan.path), "--user", "someone", "--out", str(out), "--no-gpu"]) == 0
    assert not json.loads((out / "paddy-tiny-probe" / METADATA_FILE).read_text())["enable_gpu"]


def _zip(path, files):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


def test_wheel_digest_follows_content_not_order_or_folder(tmp_path):
    a = _zip(tmp_path / "a" / "kit.whl", {"x.py": "1", "y.py": "2"})
    b = _zip(tmp_path / "b" / "kit.whl", {"y.py": "2", "x.py": "1"})
    c = _zip(tmp_path / "c" / "kit.whl", {"x.py": "1", "y.py": "3"})
    assert wheel_digest([a]) == wheel_digest([b]) != wheel_digest([c])


def test_dependency_pins_and_closure_follow_installed_versions():
    from importlib.metadata import version

    pins = dependency_requirements()
    assert pins == [f"{name}=={version(name)}" for name in DEPENDENCY_WHEELS]
    closure = dependency_closure()
    assert set(pins) <= set(closure) and f"plum-dispatch=={version('plum-dispatch')}" in closure
    assert not [p for p in closure if p.split("==")[0] in ("torch", "torchvision", "numpy", "pandas")]


def test_internet_auto_only_for_members_that_download_weights(plan):
    pretrained = plan.members[1].replace(pretrained=True)
    mixed = plan.__class__(members=(plan.members[0], pretrained), budget_gb=plan.budget_gb, path=plan.path)
    flags = [meta["enable_internet"] for meta, _ in build_kernels(mixed, "someone", lanes=1).values()]
    assert flags == [False, False, True, False]  # probe, member 1, pretrained member 2, ensemble
    flags = [meta["enable_internet"] for meta, _ in build_kernels(mixed, "someone").values()]
    assert flags == [False, True, False]  # a lanes kernel goes online when one of its members downloads
    for choice, expected in (("on", True), ("off", False)):
        assert {m["enable_internet"] for m, _ in build_kernels(mixed, "someone", internet=choice).values()} \
            == {expected}
    with pytest.raises(ConfigError, match="internet"):
        build_kernels(plan, "someone", internet="yes")


def test_package_kit_builds_the_wheel_then_reuses_it(tmp_path):
    meta, digest = package_kit("someone", tmp_path / "stage")
    wheels = sorted((tmp_path / "stage").glob("*.whl"))
    assert len(wheels) == 1 and wheels[0].name.startswith("paddy_kit-")
    with zipfile.ZipFile(wheels[0]) as archive:
        names = archive.namelist()
    assert "paddy/kaggle/kernels.py" in names and "paddy/kaggle/client.py" in names
    assert json.loads((tmp_path / "stage" / DATASET_METADATA_FILE).read_text()) == meta
    assert meta["id"] == "someone/paddy-kit" and digest in meta["description"] and 6 <= len(meta["title"]) <= 50
    assert wheel_digest(wheels) == digest
    # Unchanged source: the same wheel is reused (not rebuilt), only the metadata follows the user.
    built = wheels[0].stat().st_mtime_ns
    other, again = package_kit("other-user", tmp_path / "stage")
    assert again == digest and next((tmp_path / "stage").glob("*.whl")).stat().st_mtime_ns == built
    assert json.loads((tmp_path / "stage" / DATASET_METADATA_FILE).read_text()) == other
    assert other["id"] == "other-user/paddy-kit"
    assert (tmp_path / "stage.source").read_text().strip() == source_digest()


ONE_MEMBER_TOML = """budget_gb = 4

[[members]]
arch = "resnet10t"
size = 32
item_size = 48
epochs = 1
bs = 16
finetune = false
pretrained = false
tta = "none"
num_workers = 0
"""


@pytest.mark.slow
@pytest.mark.parametrize("folds", ["", "folds = 2\n"])
def test_rendered_scripts_install_the_kit_and_run_the_plan(tiny_sample, tmp_path, monkeypatch, folds):
    """Member (or fold) scripts and the ensemble script, /kaggle paths moved here, install the wheel and work."""
    (tmp_path / "one.toml").write_text(ONE_MEMBER_TOML + folds)
    plan = load_plan(tmp_path / "one.toml")
    built = build_kernels(plan, "someone", gpu=False)  # a GPU kernel would stop here: this machine has no GPU
    stage, working, site = tmp_path / "kit", tmp_path / "working", tmp_path / "site"
    package_kit("someone", stage)
    working.mkdir()
    monkeypatch.setenv("PIP_TARGET", str(site))  # the scripts' pip installs the kit there, not into this venv
    moves = {f"{KAGGLE_INPUT}/{KIT_DATASET}": str(stage),
             f"{KAGGLE_INPUT}/paddy-disease-classification": str(tiny_sample),
             KAGGLE_WORKING: str(working)}
    moves.update({f"{KAGGLE_INPUT}/{slug}": str(working) for slug in list(built)[1:-1]})
    for slug in list(built)[1:]:  # the member, then the ensemble (the probe has its own tests in test_probe)
        text = built[slug][1]
        for old, new in moves.items():
            text = text.replace(old, new)
        exec(compile(text, f"{slug}/kernel.py", "exec"), {"__name__": "__main__"})
    assert (site / "paddy" / "kaggle" / "kernels.py").is_file()
    assert (working / plan.members[0].run_name / "result.json").is_file()
    submission = (working / "submission.csv").read_text().splitlines()
    assert submission[0] == "image_id,label" and len(submission) == 17


def test_render_with_an_array_cache_reads_it_as_a_dataset(plan, tiny_sample, tmp_path):
    cache = write_array_cache(tiny_sample, tmp_path / "cache", 64, "squish", workers=1, progress=False).out
    unset = replace(plan, members=(replace(plan.members[0], item_size=None), plan.members[1]))
    kernels = build_kernels(unset, "someone", cache=cache)
    assert cache_ref("someone", cache) == "someone/paddy-cache-squish64x64"
    for meta, script in kernels.values():
        assert meta["dataset_sources"] == ["someone/paddy-kit", "someone/paddy-cache-squish64x64"]
        assert _assigned(script, "DATA") == f"{KAGGLE_INPUT}/paddy-cache-squish64x64"
    member = next(script for slug, (_, script) in kernels.items() if "resnet10t" in slug)
    assert "'item_size': [64, 64]" in member  # taken from the cache, so the run name is the one trained
    assert 6 <= len(cache_metadata("someone", cache)["title"]) <= 50
    other = write_array_cache(tiny_sample, tmp_path / "other", (40, 32), "squish", workers=1, progress=False).out
    with pytest.raises(ConfigError, match="plan member resnet10t-squish64x64-64x64: .* holds items of 40x32, the "
                                          "run asks for 64x64"):
        render_kernels(plan, "someone", out=tmp_path / "kernels", cache=other)
    assert not (tmp_path / "kernels").exists()


HOSTILE = ['x"y', "x'y", 'a"""b', "a'''b", "back\\slash\\N{x}", "new\nline", "{braces} {0} {data!r}", "\\", "é\u2028"]


def _compiles_to(script, **expected):
    """The script compiles without even a warning (an invalid escape is one), and assigns each value literally."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(script, "kernel.py", "exec")
    for name, value in expected.items():
        assert _assigned(script, name) == value


@pytest.mark.parametrize("value", HOSTILE)
def test_every_value_enters_a_script_as_a_literal(plan, value):
    from paddy.kaggle.kernels import ensemble_script, member_script, probe_script

    title = f"paddy {value} probe"
    _compiles_to(probe_script(title, plan, kit=value, data=value), TITLE=title, KIT=value, DATA=value)
    member = plan.members[0].replace(name=value + "x")
    script = member_script(title, member, kit=value, data=value, budget_gb=4.0)
    _compiles_to(script, TITLE=title, KIT=value, DATA=value)
    assert TrainConfig.from_dict(_assigned(script, "CONFIG")) == member
    _compiles_to(ensemble_script(title, [("s", value, None)], kit=value, data=value), TITLE=title, DATA=value,
                 RUNS=[f"{KAGGLE_INPUT}/s/{value}"])


@pytest.mark.parametrize("stem", ['q"""uote', "back\\N{slash}", "br{ace}s {0}", "new\nline", "it's"])
def test_a_plan_with_a_hostile_name_renders_scripts_that_compile(plan, tmp_path, stem):
    named = replace(plan, path=tmp_path / f"{stem}.toml")
    for slug, (meta, script) in build_kernels(named, "someone").items():
        assert SLUG_PATTERN.match(slug)
        _compiles_to(script, TITLE=meta["title"], DATA=f"{KAGGLE_INPUT}/paddy-disease-classification")


@pytest.mark.parametrize("slug", ['x"y', "bad slug!", "Paddy", "a--b", "-a", "a/../b", "", "x" * 101, "a\nb"])
def test_a_competition_slug_kaggle_would_not_have_is_refused_before_anything_is_written(tmp_path, capsys, slug):
    (tmp_path / "tiny.toml").write_text(PLAN_TOML)
    code = main(["kernels", "render", str(tmp_path / "tiny.toml"), "--user", "someone", f"--competition={slug}",
                 "--out", str(tmp_path / "kernels")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and captured.err.count("\n") == 1, captured
    assert "--competition must be a Kaggle competition slug" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def test_a_data_parallel_plan_gets_one_member_a_kernel_on_both_gpus(plan):
    built = build_kernels(replace(plan, devices=2), "someone")
    scripts = [text for _, text in built.values()][1:-1]
    assert len(scripts) == 2
    for script in scripts:
        assert "from paddy.vision.distributed import launch_distributed" in script
        assert "launch_distributed(find_data(DATA), config, OUT / config.run_name, 2, budget_gb=4.0," in script
    with pytest.raises(ConfigError, match="needs 4 GPUs"):
        build_kernels(replace(plan, devices=4), "someone")
