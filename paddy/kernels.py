"""Thin Kaggle kernels, built from a plan: metadata dicts, slugs, short scripts, and the kit packed as a dataset.

Everything here is pure or writes local files only; paddy.kaggle_api performs the pushes.
A rendered folder holds `kernel-metadata.json` and `kernel.py`; the script installs the kit from the kit dataset
with `pip install --no-index` (competitions turn the internet off) and calls the same library functions as the CLI.
"""

import hashlib
import json
import pprint
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from paddy import atomic, competition
from paddy.errors import ConfigError, PaddyError

METADATA_FILE = "kernel-metadata.json"
CODE_FILE = "kernel.py"
DATASET_METADATA_FILE = "dataset-metadata.json"
KIT_DATASET = "paddy-kit"  # the dataset slug the kit's wheels live in: <user>/paddy-kit
KIT_TITLE = "paddy kit wheels"
KAGGLE_INPUT = "/kaggle/input"
KAGGLE_WORKING = "/kaggle/working"
INTERNET_CHOICES = ("auto", "on", "off")
TITLE_LENGTH = (5, 50)  # Kaggle refuses kernel titles outside this range
# --with-deps pins these at the versions tested here (requirements.txt in the kit dataset) and packs the wheels of
# everything they need that a Kaggle image is not counted on to have: pip resolves the rest from the image offline.
DEPENDENCY_WHEELS = ("fastai", "fastcore", "fasttransform", "timm")
# In every Kaggle image; the CUDA builds of torch and torchvision must stay the image's own.
KAGGLE_IMAGE_PROVIDES = ("torch", "torchvision", "numpy", "pandas", "pillow", "matplotlib", "scipy", "scikit-learn",
                         "spacy", "requests", "pyyaml", "packaging", "cloudpickle", "huggingface-hub", "safetensors",
                         "typing-extensions", "rich", "setuptools", "six")
REQUIREMENTS_FILE = "requirements.txt"
SOURCE_FILES = ("setup.cfg", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")  # besides paddy/ itself
USER_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$")
SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def kernel_slug(title):
    """The slug Kaggle derives from a title (the same slugify the kaggle client checks pushes with)."""
    from slugify import slugify

    return slugify(title)


def check_user(user):
    """A Kaggle username, lower case; ConfigError when it cannot be one."""
    name = str(user or "").strip().lower()
    if not USER_PATTERN.match(name):
        raise ConfigError(f"--user must be your Kaggle username (letters, digits, - or _), got {user!r}")
    return name


def check_title(title):
    """A kernel title Kaggle accepts (5 to 50 characters) whose slug is valid; returns the slug."""
    low, high = TITLE_LENGTH
    if not low <= len(title) <= high:
        raise ConfigError(f"kernel title {title!r} must be {low} to {high} characters long; shorten the plan name")
    slug = kernel_slug(title)
    if len(slug) < low or not SLUG_PATTERN.match(slug):
        raise ConfigError(f"kernel title {title!r} gives slug {slug!r}; use letters and digits in the title")
    return slug


def kernel_metadata(user, title, competition_slug=competition.COMPETITION, kernel_sources=(), gpu=True,
                    internet=False, private=True, kit_dataset=KIT_DATASET):
    """The kernel-metadata.json dict of one script kernel; its id is <user>/<slug of the title>."""
    user = check_user(user)
    slug = check_title(title)
    return {
        "id": f"{user}/{slug}",
        "title": title,
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": bool(private),
        "enable_gpu": bool(gpu),
        "enable_tpu": False,
        "enable_internet": bool(internet),
        "dataset_sources": [f"{user}/{kit_dataset}"],
        "competition_sources": [competition_slug],
        "kernel_sources": list(kernel_sources),
        "model_sources": [],
    }


def kernel_titles(plan_name, members):
    """Titles of the probe, each member and the ensemble kernel; members are numbered so titles stay unique."""
    prefix = f"paddy {plan_name}"
    high = TITLE_LENGTH[1]
    member_titles = [f"{prefix} {i:02d} {m.run_name}"[:high].rstrip(" -_.") for i, m in enumerate(members, 1)]
    return f"{prefix} probe", member_titles, f"{prefix} ensemble"


_INSTALL = '''import glob
import subprocess
import sys
from pathlib import Path

# Competitions turn the internet off: install the kit from its dataset, and the pinned dependencies packed with it
# (paddy kernels push --with-deps), taking from the image whatever it already has.
PIP = [sys.executable, "-m", "pip", "install", "--no-index", "--quiet", "--find-links", "{kit}"]
subprocess.run([*PIP, "--no-deps", *glob.glob("{kit}/paddy_kit-*.whl")], check=True)
if Path("{kit}/requirements.txt").is_file():
    subprocess.run([*PIP, "-r", "{kit}/requirements.txt"], check=True)
DATA = "{data}"
OUT = Path("{working}")
'''


RENDERED_MARK = "Rendered by `paddy kernels render`"  # in every script: marks folders render may replace
_LOG_NOTE = "# the kernel's log keeps fastai's epoch table, not thousands of progress-bar updates"


def _script(kind, title, body, kit, data):
    doc = (f'"""paddy {kind} kernel: {title}.\n\n'
           f'{RENDERED_MARK}: edit the plan, not this file.\n"""\n\n')
    return doc + _INSTALL.format(kit=kit, data=data, working=KAGGLE_WORKING) + "\n" + body


def probe_script(title, plan, kit, data):
    """Script of the probe kernel: peak memory of every plan member on Kaggle's GPU; the plan comes back with accum."""
    # Only what differs from TrainConfig's defaults (the same kit version reads it back), so the script stays short.
    members = ",\n           ".join(dict_literal(non_defaults(m), indent=12) for m in plan.members)
    body = (f"MEMBERS = [{members}]\n\n"
            "from paddy import memory  # noqa: E402  (importable only after the install above)\n"
            "from paddy.config import TrainConfig  # noqa: E402\n"
            "from paddy.data import find_data  # noqa: E402\n"
            "from paddy.plan import Plan  # noqa: E402\n"
            "from paddy.runtime import progress_bars  # noqa: E402\n\n"
            f"plan = Plan(members=tuple(TrainConfig.from_dict(m) for m in MEMBERS), budget_gb={plan.budget_gb!r})\n"
            f"with progress_bars(False):  {_LOG_NOTE}\n"
            '    report = memory.run_probe(find_data(DATA), plan.members, plan.budget_gb, out=OUT / "probe")\n'
            "print(memory.format_table(report))\n"
            'memory.write_chosen_accum(plan, report, OUT / "plan.toml")\n')
    return _script("probe", title, body, kit, data)


def non_defaults(config):
    """The fields of a TrainConfig that differ from the defaults (arch always), as a plain dict."""
    from paddy.config import TrainConfig

    defaults = TrainConfig(arch=config.arch).to_dict()
    return {k: v for k, v in config.to_dict().items() if k == "arch" or v != defaults[k]}


def dict_literal(data, indent=10, width=110):
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


def member_script(title, config, kit, data, budget_gb=16.0):
    """Script of one member's training kernel: the resolved config as a dict literal, then train_run."""
    body = (f"CONFIG = {dict_literal(config.to_dict())}\n\n"
            "from paddy.config import TrainConfig  # noqa: E402  (importable only after the install above)\n"
            "from paddy.data import find_data  # noqa: E402\n"
            "from paddy.runtime import progress_bars  # noqa: E402\n"
            "from paddy.train import train_run  # noqa: E402\n\n"
            "config = TrainConfig.from_dict(CONFIG)\n"
            f"with progress_bars(False):  {_LOG_NOTE}\n"
            f"    print(train_run(find_data(DATA), config, OUT / config.run_name, budget_gb={budget_gb!r}))\n")
    return _script("member", title, body, kit, data)


def ensemble_script(title, member_runs, kit, data):
    """Script of the ensemble kernel: each member kernel's run folder, read through kernel_sources, ensembled."""
    runs = pprint.pformat([f"{KAGGLE_INPUT}/{slug}/{run}" for slug, run in member_runs], width=110)
    body = (f"RUNS = {runs}\n\n"
            "from paddy.data import find_data  # noqa: E402  (importable only after the install above)\n"
            "from paddy.ensemble import ensemble_runs, format_table  # noqa: E402\n\n"
            f'print(format_table(ensemble_runs(RUNS, find_data(DATA), OUT / "submission.csv", message={title!r})))\n')
    return _script("ensemble", title, body, kit, data)


def kernel_internet(internet, config=None):
    """Whether a kernel gets the internet: "on", "off", or "auto" (only a member that downloads pretrained weights)."""
    if internet not in INTERNET_CHOICES:
        raise ConfigError(f"internet must be one of {', '.join(INTERNET_CHOICES)}, got {internet!r}")
    if internet == "auto":
        return bool(config is not None and config.pretrained)
    return internet == "on"


def build_kernels(plan, user, competition_slug=competition.COMPETITION, gpu=True, internet="auto"):
    """Every kernel of a plan as {slug: (metadata, script)}: the probe, one per member, then the ensemble."""
    user = check_user(user)
    plan_name = Path(plan.path).stem if plan.path else "plan"
    kit, data = f"{KAGGLE_INPUT}/{KIT_DATASET}", f"{KAGGLE_INPUT}/{competition_slug}"
    probe_title, member_titles, ensemble_title = kernel_titles(plan_name, plan.members)
    options = {"competition_slug": competition_slug, "gpu": gpu}
    kernels = {}
    probe = kernel_metadata(user, probe_title, internet=kernel_internet(internet), **options)
    kernels[_slug_of(probe)] = (probe, probe_script(probe_title, plan, kit, data))
    member_runs = []
    for title, config in zip(member_titles, plan.members):
        meta = kernel_metadata(user, title, internet=kernel_internet(internet, config), **options)
        kernels[_slug_of(meta)] = (meta, member_script(title, config, kit, data, plan.budget_gb))
        member_runs.append((_slug_of(meta), config.run_name))
    sources = [f"{user}/{slug}" for slug, _ in member_runs]
    # The ensemble only averages the members' saved probabilities: a GPU would spend weekly quota on nothing.
    ensemble = kernel_metadata(user, ensemble_title, kernel_sources=sources, internet=kernel_internet(internet),
                               **{**options, "gpu": False})
    kernels[_slug_of(ensemble)] = (ensemble, ensemble_script(ensemble_title, member_runs, kit, data))
    if len(kernels) != len(plan.members) + 2:
        raise ConfigError(f"kernel slugs of plan {plan_name!r} collide; give the members shorter distinct names")
    return kernels


def render_kernels(plan, user, competition_slug=competition.COMPETITION, out="kernels", gpu=True, internet="auto"):
    """Write one folder per kernel under `out`; returns (folders in push order, stale folders removed)."""
    kernels = build_kernels(plan, user, competition_slug, gpu=gpu, internet=internet)  # all checks before any write
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


def stale_folders(out, prefix):
    """Folders under `out` that `paddy kernels render` wrote for slugs starting with `prefix`, and nothing else."""
    found = []
    for meta_path in sorted(Path(out).glob(f"{prefix}*/{METADATA_FILE}")):
        folder = meta_path.parent
        code = folder / CODE_FILE
        ours = code.is_file() and RENDERED_MARK in code.read_text(errors="replace")
        if ours and {p.name for p in folder.iterdir()} == {CODE_FILE, METADATA_FILE}:  # nothing a user added
            found.append(folder)
    return found


def read_kernel_folder(folder):
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


def kernel_folders(root):
    """The rendered kernel folders under `root`, in push order: kernels without kernel_sources first."""
    folders = sorted(p.parent for p in Path(root).glob(f"*/{METADATA_FILE}"))
    if not folders:
        raise ConfigError(f"no kernel folders under {root}: render them first with paddy kernels render")
    return sorted(folders, key=lambda f: bool(read_kernel_folder(f).get("kernel_sources")))


def _slug_of(meta):
    return meta["id"].split("/", 1)[1]


def dataset_metadata(user, version, digest, slug=KIT_DATASET):
    """dataset-metadata.json of the kit dataset; the description carries the wheels' digest."""
    return {
        "id": f"{check_user(user)}/{slug}",
        "title": KIT_TITLE,
        "licenses": [{"name": "other"}],  # code Apache-2.0; the bundled MovieLens sample keeps its README's terms
        "description": f"paddy-kit {version} wheels for offline Kaggle kernels (digest {digest}).",
    }


def wheel_digest(paths):
    """A digest of wheels' contents (names and CRCs), stable across rebuilds of the same source."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: Path(p).name):
        with zipfile.ZipFile(path) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                digest.update(f"{Path(path).name}:{info.filename}:{info.CRC}\n".encode())
    return digest.hexdigest()[:16]


def kit_source_root():
    """The source checkout the installed kit comes from (editable install), holding setup.cfg."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "setup.cfg").is_file() and not (root / "pyproject.toml").is_file():
        raise ConfigError(f"cannot package the kit: {root} is not a source checkout; run from a clone (pip install -e)")
    return root


def _installed(name):
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        return distribution(name)
    except PackageNotFoundError:
        raise ConfigError(f"--with-deps: {name} is not installed here; pip install it first") from None


def dependency_requirements():
    """Pinned requirements of DEPENDENCY_WHEELS at the versions installed here (what the kit was tested with)."""
    return [f"{name}=={_installed(name).version}" for name in DEPENDENCY_WHEELS]


def dependency_closure():
    """Pins of DEPENDENCY_WHEELS and everything they need (no extras), less what every Kaggle image has."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    provided = {canonicalize_name(n) for n in KAGGLE_IMAGE_PROVIDES}
    todo, pins = list(DEPENDENCY_WHEELS), {}
    while todo:
        name = canonicalize_name(todo.pop())
        if name in pins or name in provided:
            continue
        dist = _installed(name)
        pins[name] = f"{name}=={dist.version}"
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return sorted(pins.values())


def build_wheels(dest, with_deps=False):
    """Build the kit's wheel into `dest`; with_deps, also the dependency wheels and a requirements.txt of pins."""
    dest = Path(dest)
    commands = [[sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                 "--wheel-dir", str(dest), str(kit_source_root())]]
    if with_deps:
        commands.append([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                         "--dest", str(dest), *dependency_closure()])
        atomic.write_text(dest / REQUIREMENTS_FILE, "\n".join(dependency_requirements()) + "\n")
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise PaddyError(f"packaging the kit failed ({' '.join(command[3:5])}): {last}")
    return sorted(dest.glob("*.whl"))


def source_digest(with_deps=False):
    """A digest of everything the kit's wheel is built from (and the pinned dependencies when packed too)."""
    root = kit_source_root()
    files = [root / name for name in SOURCE_FILES if (root / name).is_file()]
    files += [p for p in (root / "paddy").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    digest = hashlib.sha256("\n".join(dependency_closure() if with_deps else []).encode())
    for path in sorted(files):
        digest.update(f"{path.relative_to(root)}\n".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def package_kit(user, out, with_deps=False):
    """Build the kit dataset folder `out` (wheels + dataset-metadata.json); returns (metadata, digest).

    The wheels are rebuilt only when the source changed since the last build into `out` (`<out>.source`).
    """
    from paddy import __version__

    out, source = Path(out), source_digest(with_deps)
    record = out.with_name(out.name + ".source")
    wheels = sorted(out.glob("*.whl"))
    if wheels and record.is_file() and record.read_text().strip() == source:
        digest = wheel_digest(wheels)
        meta = dataset_metadata(user, __version__, digest)
        atomic.write_json(out / DATASET_METADATA_FILE, meta)  # the user may differ from the last build's
        return meta, digest
    with tempfile.TemporaryDirectory(prefix="paddy-wheels-") as tmp:
        wheels = build_wheels(tmp, with_deps=with_deps)
        digest = wheel_digest(wheels)
        meta = dataset_metadata(user, __version__, digest)
        shutil.rmtree(out, ignore_errors=True)  # a staging folder of ours, rebuilt when the source changes
        with atomic.atomic_dir(out) as folder:
            for path in [*wheels, *Path(tmp).glob(REQUIREMENTS_FILE)]:
                (folder / path.name).write_bytes(path.read_bytes())
            atomic.write_json(folder / DATASET_METADATA_FILE, meta)
    atomic.write_text(record, source + "\n")
    return meta, digest
