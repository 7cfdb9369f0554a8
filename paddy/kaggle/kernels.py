"""Thin Kaggle kernels, built from a plan: metadata dicts and short scripts, rendered into folders.

Everything here is pure or writes local files only; paddy.kaggle.client performs the pushes.
A rendered folder holds `kernel-metadata.json` and `kernel.py`; the script installs the kit from the kit dataset
with `pip install --no-index` (competitions turn the internet off) and calls the same library functions as the CLI.
"""

import dataclasses
import json
import pprint
import shutil
from pathlib import Path

from paddy.core import atomic
from paddy.core.accelerators import DEFAULT_GPU_SHAPE, check_machine_shape, shape_accelerator
from paddy.core.config import TrainConfig
from paddy.core.errors import ConfigError
from paddy.core.plan import Plan
from paddy.data import competition
from paddy.data.competition import KAGGLE_INPUT
from paddy.kaggle.cache import cache_input, cache_ref, check_members
from paddy.kaggle.kit import KIT_DATASET
from paddy.kaggle.names import (
    SLUG_PATTERN,
    TITLE_LENGTH,
    USER_PATTERN,
    check_competition,
    check_title,
    check_user,
    kernel_slug,
)

METADATA_FILE = "kernel-metadata.json"
CODE_FILE = "kernel.py"
KAGGLE_WORKING = "/kaggle/working"
INTERNET_CHOICES = ("auto", "on", "off")


def kernel_metadata(user: str, title: str, competition_slug: str = competition.COMPETITION, kernel_sources: tuple = (),
                    gpu: bool = True, internet: bool = False, private: bool = True,
                    kit_dataset: str = KIT_DATASET, datasets: tuple = (),
                    accelerator: str = DEFAULT_GPU_SHAPE) -> dict:
    """The kernel-metadata.json dict of one script kernel; its id is <user>/<slug of the title>; `datasets`: more
    dataset refs it reads (an array cache).

    A GPU kernel names its machine (`machine_shape`): one that only sets enable_gpu has been reported to land on a
    retired P100 that today's torch builds cannot run on (kaggle-cli issues #821, #1196).
    """
    user = check_user(user)
    slug = check_title(title)
    competition_slug = check_competition(competition_slug)
    shape = {"machine_shape": check_machine_shape(accelerator)} if gpu else {}
    return {
        "id": f"{user}/{slug}",
        "title": title,
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": bool(private),
        "enable_gpu": bool(gpu),
        "enable_tpu": False,
        **shape,
        "enable_internet": bool(internet),
        "dataset_sources": [f"{user}/{kit_dataset}", *datasets],
        "competition_sources": [competition_slug],
        "kernel_sources": list(kernel_sources),
        "model_sources": [],
    }


def kernel_titles(plan_name: str, members: tuple) -> tuple:
    """Titles of the probe, each member and the ensemble kernel; members are numbered so titles stay unique."""
    prefix = f"paddy {plan_name}"
    high = TITLE_LENGTH[1]
    member_titles = [f"{prefix} {i:02d} {m.run_name}"[:high].rstrip(" -_.") for i, m in enumerate(members, 1)]
    return f"{prefix} probe", member_titles, f"{prefix} ensemble"


def training_kernels(plan_name: str, members: tuple, lanes: int = 1) -> list:
    """(title, members, fold) of every training kernel: consecutive plain members `lanes` at a time (numbered
    01-02), each fold of a K-fold member alone (as member_kernels)."""
    prefix, high = f"paddy {plan_name}", TITLE_LENGTH[1]
    found, group = [], []

    def flush():
        if group:
            first, last = group[0][0], group[-1][0]
            number = f"{first:02d}" if len(group) == 1 else f"{first:02d}-{last:02d}"
            title = f"{prefix} {number} {group[0][1].run_name}"[:high].rstrip(" -_.")
            found.append((title, tuple(config for _, config in group), None))
            group.clear()

    for index, config in enumerate(members, 1):
        if config.folds is None:
            group.append((index, config))
            if len(group) == lanes:
                flush()
            continue
        flush()
        title = f"{prefix} {index:02d} {config.run_name}"[:high].rstrip(" -_.")
        found += [(t, (c,), fold) for t, c, fold in member_kernels([title], (config,))]
    flush()
    return found


def member_kernels(member_titles: list, members: tuple) -> list:
    """(title, config, fold) of every training kernel: one per member, one per fold of a K-fold member (in parallel)."""
    high = TITLE_LENGTH[1]
    found = []
    for title, config in zip(member_titles, members):
        if config.folds is None:
            found.append((title, config, None))
            continue
        for fold in range(config.folds):  # the fold goes last, so a long title loses its name's tail, not the fold
            suffix = f" f{fold}"
            found.append((title[:high - len(suffix)].rstrip(" -_.") + suffix, config, fold))
    return found


_IMPORTS = """import glob
import subprocess
import sys
from pathlib import Path

"""
_INSTALL = """
# Competitions turn the internet off: install the kit from its dataset, and the pinned dependencies packed with it
# (paddy kernels push --with-deps), taking from the image whatever it already has.
PIP = [sys.executable, "-m", "pip", "install", "--no-index", "--quiet", "--find-links", KIT]
subprocess.run([*PIP, "--no-deps", *glob.glob(str(Path(KIT) / "paddy_kit-*.whl"))], check=True)
if (Path(KIT) / "requirements.txt").is_file():
    subprocess.run([*PIP, "-r", str(Path(KIT) / "requirements.txt")], check=True)
"""


RENDERED_MARK = "Rendered by `paddy kernels render`"  # in every script: marks folders render may replace
_LOG_NOTE = "# the kernel's log keeps fastai's epoch table, not thousands of progress-bar updates"


_RUNTIME_IMPORT = "from paddy.core.runtime import progress_bars"
_GPU_CHECK = "exit_unless_gpus_usable(expected={gpus})  # one line, exit 1: torch cannot run on this session's GPUs\n"


def with_gpu_check(body: str, gpus: int) -> str:
    """A training script `body` that first checks the session's GPUs, right after its imports."""
    imports_end = body.rindex("  # noqa: E402\n\n") + len("  # noqa: E402\n\n")
    body = body[:imports_end] + _GPU_CHECK.format(gpus=int(gpus)) + body[imports_end:]
    return body.replace(_RUNTIME_IMPORT, "from paddy.core.runtime import exit_unless_gpus_usable, progress_bars", 1)


def _script(kind, title, body, kit, data, gpus=0):
    # Every value enters the script as a Python literal (repr), never pasted into code or a docstring: a quote,
    # backslash, brace or newline in a title or path stays data.
    doc = f'"""paddy {kind} kernel.\n\n{RENDERED_MARK}: edit the plan, not this file.\n"""\n\n'
    values = f"TITLE = {str(title)!r}\nKIT = {str(kit)!r}\nDATA = {str(data)!r}\nOUT = Path({KAGGLE_WORKING!r})\n"
    body = with_gpu_check(body, gpus) if gpus else body
    return doc + _IMPORTS + values + _INSTALL + "\n" + body


def plan_prelude(plan: Plan, imports: str) -> str:
    """The start of a script that rebuilds `plan`: its members as literals, the kit's imports, then `plan = ...`."""
    # Only what differs from TrainConfig's defaults (the same kit version reads it back), so the script stays short.
    members = ",\n           ".join(dict_literal(non_defaults(m), indent=12) for m in plan.members)
    return (f"MEMBERS = [{members}]\n\n"
            "from paddy.core.config import TrainConfig  # noqa: E402  (importable only after the install above)\n"
            "from paddy.core.plan import Plan  # noqa: E402\n"
            "from paddy.core.runtime import progress_bars  # noqa: E402\n"
            "from paddy.data.folder import find_data  # noqa: E402\n"
            + imports + "\n"
            "plan = Plan(members=tuple(TrainConfig.from_dict(m) for m in MEMBERS), "
            f"budget_gb={plan.budget_gb!r}, accelerator={plan.accelerator!r})\n")


def probe_script(title: str, plan: Plan, kit: str, data: str, gpus: int = 0) -> str:
    """Script of the probe kernel: peak memory of every plan member on Kaggle's GPU; the plan comes back with accum."""
    body = (plan_prelude(plan, "from paddy.probe.report import format_probe_table  # noqa: E402\n"
                               "from paddy.probe.run import run_probe, write_chosen_accum  # noqa: E402\n")
            + f"with progress_bars(False):  {_LOG_NOTE}\n"
            '    report = run_probe(find_data(DATA), plan.members, plan.budget_gb, out=OUT / "probe")\n'
            "print(format_probe_table(report))\n"
            'write_chosen_accum(plan, report, OUT / "plan.toml")\n')
    return _script("probe", title, body, kit, data, gpus)


def non_defaults(config: TrainConfig) -> dict:
    """The fields of a TrainConfig that differ from the defaults (arch always), as a plain dict."""
    defaults = TrainConfig(arch=config.arch).to_dict()
    return {k: v for k, v in config.to_dict().items() if k == "arch" or v != defaults[k]}


def dict_literal(data: dict, indent: int = 10, width: int = 110) -> str:
    """A dict as a Python literal packed into few lines (the script carries the resolved config, compactly)."""
    items = [f"{key!r}: {value!r}" for key, value in data.items()]
    lines, line = [], ""
    for item in items:
        if line and indent + len(line) + len(item) + 2 > width:
            lines.append(line + ",")
            line = ""
        line = f"{line}, {item}" if line else item
    lines.append(line)
    return "{" + ("\n" + " " * indent).join(lines) + "}"


def member_script(title: str, config: TrainConfig, kit: str, data: str, budget_gb: float = 16.0,
                  fold: int | None = None, gpus: int = 0, devices: int = 1) -> str:
    """Script of one member's training kernel: the resolved config as a dict literal, then train_run.

    A K-fold member's kernel trains one fold (train_member): OUT/<run>/fold-<i>/, with OUT/folds.csv beside it.
    With `devices` > 1 the member trains data-parallel on that many GPUs (launch_distributed).
    """
    train = "train_run" if fold is None else "train_member"
    where = "OUT / config.run_name" + ("" if fold is None else f", fold={int(fold)!r}")
    module = "run"
    if devices > 1:
        train, module, where = "launch_distributed", "distributed", f"OUT / config.run_name, {int(devices)!r}"
    body = (f"CONFIG = {dict_literal(config.to_dict())}\n\n"
            "from paddy.core.config import TrainConfig  # noqa: E402  (importable only after the install above)\n"
            "from paddy.core.runtime import progress_bars  # noqa: E402\n"
            "from paddy.data.folder import find_data  # noqa: E402\n"
            "from paddy.probe.run import choose_accum  # noqa: E402\n"
            f"from paddy.vision.{module} import {train}  # noqa: E402\n\n"
            "config = TrainConfig.from_dict(CONFIG)\n"
            f"with progress_bars(False):  {_LOG_NOTE}\n"
            f"    print({train}(find_data(DATA), config, {where}, budget_gb={budget_gb!r},\n"
            "                    choose_accum=choose_accum))\n")
    return _script("member", title, body, kit, data, gpus)


def lanes_script(title: str, plan: Plan, kit: str, data: str, lanes: int, gpus: int = 0) -> str:
    """Script of a kernel that trains several members at once, one lane (process) per GPU: train_plan_lanes."""
    body = (plan_prelude(plan, "from paddy.probe.run import choose_accum  # noqa: E402\n"
                               "from paddy.vision.lanes import describe_result, failed_runs, train_plan_lanes"
                               "  # noqa: E402\n")
            + f"with progress_bars(False):  {_LOG_NOTE}\n"
            f"    results = train_plan_lanes(find_data(DATA), plan, OUT, lanes={lanes}, choose_accum=choose_accum)\n"
            "print(*(describe_result(r) for r in results), sep=\"\\n\")\n"
            # A failed lane's log is in OUT/.lanes/; the other lanes' runs are complete.
            'sys.exit(f"paddy: runs failed: {\', \'.join(failed_runs(results))}" if failed_runs(results) else 0)\n')
    return _script("lanes", title, body, kit, data, gpus)


def ensemble_script(title: str, member_runs: list, kit: str, data: str) -> str:
    """Script of the ensemble kernel: each member kernel's run folder, read through kernel_sources, ensembled.

    `member_runs` holds (slug, run name, fold or None). K-fold members are first assembled from their fold
    kernels' outputs; when every member has folds, the weights are fitted on the OOF rows (Caruana).
    """
    plain = [f"{KAGGLE_INPUT}/{slug}/{run}" for slug, run, fold in member_runs if fold is None]
    folds = {}
    for slug, run, fold in member_runs:
        if fold is not None:
            folds.setdefault(run, []).append(f"{KAGGLE_INPUT}/{slug}/{run}/fold-{fold}")
    if not folds:
        body = (f"RUNS = {pprint.pformat(plain, width=110)}\n\n"
                "from paddy.data.folder import find_data  # noqa: E402  (importable only after the install above)\n"
                "from paddy.ensemble.blend import ensemble_runs, format_ensemble_table  # noqa: E402\n\n"
                f'print(format_ensemble_table(ensemble_runs(RUNS, find_data(DATA), OUT / "submission.csv",\n'
                f'                                          message=TITLE)))\n')
        return _script("ensemble", title, body, kit, data)
    fit = "equal" if plain else "caruana"  # weights are fitted only when every member has OOF rows
    body = (f"RUNS = {pprint.pformat(plain, width=110)}\n"
            f"FOLDS = {pprint.pformat(folds, width=110)}\n\n"
            "from paddy.core.oof import assemble_member  # noqa: E402  (importable only after the install above)\n"
            "from paddy.data.folder import find_data  # noqa: E402\n"
            "from paddy.ensemble.blend import ensemble_runs, format_ensemble_table  # noqa: E402\n\n"
            "for name, fold_runs in FOLDS.items():  # each fold trained in a kernel of its own\n"
            "    assemble_member(fold_runs, OUT / name)\n"
            "runs = RUNS + [OUT / name for name in FOLDS]\n"
            f'print(format_ensemble_table(ensemble_runs(runs, find_data(DATA), OUT / "submission.csv",\n'
            f'                                          message=TITLE, fit={fit!r})))\n')
    return _script("ensemble", title, body, kit, data)


def kernel_internet(internet: str, config: TrainConfig | None = None) -> bool:
    """Whether a kernel gets the internet: "on", "off", or "auto" (only a member that downloads pretrained weights)."""
    if internet not in INTERNET_CHOICES:
        raise ConfigError(f"internet must be one of {', '.join(INTERNET_CHOICES)}, got {internet!r}")
    if internet == "auto":
        return bool(config is not None and config.pretrained)
    return internet == "on"


def build_kernels(plan: Plan, user: str, competition_slug: str = competition.COMPETITION, gpu: bool = True,
                  internet: str = "auto", cache: str | Path | None = None, accelerator: str = DEFAULT_GPU_SHAPE,
                  lanes: int | None = None) -> dict:
    """Every kernel of a plan as {slug: (metadata, script)}: the probe, the training kernels, the ensemble. With
    `cache` (a local array cache), every kernel reads the cache dataset instead of the competition's JPEGs.

    A training kernel trains `lanes` plain members at once, one per GPU (default: the accelerator's GPU count, so
    two on GPU T4 x2; 1 without a GPU); each fold of a K-fold member has a kernel of its own.
    """
    user = check_user(user)
    competition_slug = check_competition(competition_slug)
    gpus = shape_accelerator(accelerator).count if gpu else 0  # checks the shape even for --no-gpu
    lanes = check_kernel_lanes(lanes, gpus, plan.devices)
    if plan.devices > 1 and any(m.folds for m in plan.members):
        raise ConfigError("a plan with devices > 1 cannot have folds yet: train K-fold members one GPU each")
    plan_name = Path(plan.path).stem if plan.path else "plan"
    kit, data = f"{KAGGLE_INPUT}/{KIT_DATASET}", f"{KAGGLE_INPUT}/{competition_slug}"
    datasets = ()
    if cache is not None:  # members take the cache's item size; one it does not hold is refused before any write
        plan = dataclasses.replace(plan, members=check_members(plan.members, cache))
        data, datasets = cache_input(cache), (cache_ref(user, cache),)
    probe_title, _, ensemble_title = kernel_titles(plan_name, plan.members)
    options = {"competition_slug": competition_slug, "gpu": gpu, "datasets": datasets, "accelerator": accelerator}
    kernels = {}
    probe = kernel_metadata(user, probe_title, internet=kernel_internet(internet), **options)
    kernels[_slug_of(probe)] = (probe, probe_script(probe_title, plan, kit, data, gpus))
    member_runs = []
    trainers = training_kernels(plan_name, plan.members, lanes)
    for title, group, fold in trainers:
        online = any(kernel_internet(internet, config) for config in group)
        meta = kernel_metadata(user, title, internet=online, **options)
        if len(group) == 1:
            script = member_script(title, group[0], kit, data, plan.budget_gb, fold=fold, gpus=gpus,
                                   devices=plan.devices)
        else:
            script = lanes_script(title, dataclasses.replace(plan, members=group), kit, data, len(group), gpus)
        kernels[_slug_of(meta)] = (meta, script)
        member_runs += [(_slug_of(meta), config.run_name, fold) for config in group]
    sources = list(dict.fromkeys(f"{user}/{slug}" for slug, _, _ in member_runs))
    # The ensemble only averages the members' saved probabilities: a GPU would spend weekly quota on nothing.
    ensemble = kernel_metadata(user, ensemble_title, kernel_sources=sources, internet=kernel_internet(internet),
                               **{**options, "gpu": False})
    kernels[_slug_of(ensemble)] = (ensemble, ensemble_script(ensemble_title, member_runs, kit, data))
    if len(kernels) != len(trainers) + 2:
        raise ConfigError(f"kernel slugs of plan {plan_name!r} collide; give the members shorter distinct names")
    return kernels


def check_kernel_lanes(lanes: int | None, gpus: int, devices: int = 1) -> int:
    """Members per training kernel: `lanes`, by default one per GPU (1 without a GPU, or when each member takes
    `devices` > 1 GPUs); no more lanes than GPUs."""
    if devices > 1:
        if gpus and devices > gpus:
            raise ConfigError(f"the plan's devices = {devices} needs {devices} GPUs, but the accelerator has {gpus}")
        if lanes not in (None, 1):
            raise ConfigError("a plan with devices > 1 trains one member a kernel on all its GPUs: drop --lanes")
        return 1
    if lanes is None:
        return max(1, gpus)
    if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
        raise ConfigError(f"lanes must be a whole number >= 1, got {lanes!r}")
    if gpus and lanes > gpus:
        raise ConfigError(f"--lanes {lanes} needs {lanes} GPUs in each kernel, but the accelerator has {gpus}")
    return lanes


def render_kernels(plan: Plan, user: str, competition_slug: str = competition.COMPETITION, out: str | Path = "kernels",
                   gpu: bool = True, internet: str = "auto", cache: str | Path | None = None,
                   accelerator: str = DEFAULT_GPU_SHAPE, lanes: int | None = None) -> tuple[list, list]:
    """Write one folder per kernel under `out`; returns (folders in push order, stale folders removed)."""
    kernels = build_kernels(plan, user, competition_slug, gpu=gpu, internet=internet, cache=cache,
                            accelerator=accelerator, lanes=lanes)  # every check before any write
    folders = []
    for slug, (meta, script) in kernels.items():
        folder = Path(out) / slug
        atomic.write_text(folder / CODE_FILE, script)
        atomic.write_json(folder / METADATA_FILE, meta)
        folders.append(folder)
    # A plan rendered again with fewer or renamed members: its old member folders would still be pushed by --all.
    prefix = next(iter(kernels)).removesuffix("probe")
    removed = [folder for folder in stale_folders(out, prefix) if folder not in folders]
    for folder in removed:
        shutil.rmtree(folder)
    return folders, removed


def stale_folders(out: str | Path, prefix: str) -> list[Path]:
    """Folders under `out` that `paddy kernels render` wrote for slugs starting with `prefix`, and nothing else."""
    found = []
    for meta_path in sorted(Path(out).glob(f"{prefix}*/{METADATA_FILE}")):
        folder = meta_path.parent
        code = folder / CODE_FILE
        ours = code.is_file() and RENDERED_MARK in code.read_text(errors="replace")
        if ours and {p.name for p in folder.iterdir()} == {CODE_FILE, METADATA_FILE}:  # nothing a user added
            found.append(folder)
    return found


def read_kernel_folder(folder: str | Path) -> dict:
    """The metadata of a rendered kernel folder, checked enough that a push cannot half-succeed."""
    folder = Path(folder)
    path = folder / METADATA_FILE
    if not path.is_file():
        raise ConfigError(f"{folder} has no {METADATA_FILE}: render it first with paddy kernels render")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid JSON ({error}); render it again") from None
    code = folder / str(meta.get("code_file", ""))
    if not meta.get("code_file") or not code.is_file():
        raise ConfigError(f"{path} names code_file {meta.get('code_file')!r}, which is not in {folder}")
    owner, _, slug = str(meta.get("id", "")).partition("/")
    if not USER_PATTERN.match(owner) or not SLUG_PATTERN.match(slug) or kernel_slug(meta.get("title", "")) != slug:
        raise ConfigError(f"{path}: id {meta.get('id')!r} must be <user>/<slug of the title {meta.get('title')!r}>")
    return meta


def kernel_folders(root: str | Path) -> list[Path]:
    """The rendered kernel folders under `root`, in push order: kernels without kernel_sources first."""
    folders = sorted(p.parent for p in Path(root).glob(f"*/{METADATA_FILE}"))
    if not folders:
        raise ConfigError(f"no kernel folders under {root}: render them first with paddy kernels render")
    return sorted(folders, key=lambda f: bool(read_kernel_folder(f).get("kernel_sources")))


def _slug_of(meta):
    return meta["id"].split("/", 1)[1]
