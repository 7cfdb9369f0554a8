"""The kit as a Kaggle dataset: its wheels (and, with --with-deps, pinned dependency wheels) in a staging folder.

A script kernel runs only its code file, so the kit travels as a private dataset `<user>/paddy-kit` that every
rendered kernel installs from with `pip install --no-index`. Everything here writes local files only;
paddy.kaggle.client sends them.
"""

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from paddy import __version__
from paddy.core import atomic
from paddy.core.errors import ConfigError, PaddyError
from paddy.kaggle.names import check_user

DATASET_METADATA_FILE = "dataset-metadata.json"
KIT_DATASET = "paddy-kit"  # the dataset slug the kit's wheels live in: <user>/paddy-kit
KIT_TITLE = "paddy kit wheels"
# --with-deps pins these at the versions tested here (requirements.txt in the kit dataset) and packs the wheels of
# everything they need that a Kaggle image is not counted on to have: pip resolves the rest from the image offline.
DEPENDENCY_WHEELS = ("fastai", "fastcore", "fasttransform", "timm")


# In every Kaggle image; the CUDA builds of torch and torchvision must stay the image's own.
KAGGLE_IMAGE_PROVIDES = ("torch", "torchvision", "numpy", "pandas", "pillow", "matplotlib", "scipy", "scikit-learn",
                         "spacy", "requests", "pyyaml", "packaging", "cloudpickle", "huggingface-hub", "safetensors",
                         "typing-extensions", "rich", "setuptools", "six")


REQUIREMENTS_FILE = "requirements.txt"
STAGE_MARKER = ".paddy-kit-stage"  # in every staging folder the kit made: the only folders it ever replaces
DEFAULT_STAGE_TEXT = ".whl/kit"


SOURCE_FILES = ("setup.cfg", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")  # besides paddy/ itself


def dataset_metadata(user: str, version: str, digest: str, slug: str = KIT_DATASET) -> dict:
    """dataset-metadata.json of the kit dataset; the description carries the wheels' digest."""
    return {
        "id": f"{check_user(user)}/{slug}",
        "title": KIT_TITLE,
        "licenses": [{"name": "other"}],  # code Apache-2.0; the bundled MovieLens sample keeps its README's terms
        "description": f"paddy-kit {version} wheels for offline Kaggle kernels (digest {digest}).",
    }


def wheel_digest(paths: list) -> str:
    """A digest of wheels' contents (names and CRCs), stable across rebuilds of the same source."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: Path(p).name):
        with zipfile.ZipFile(path) as archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                digest.update(f"{Path(path).name}:{info.filename}:{info.CRC}\n".encode())
    return digest.hexdigest()[:16]


def kit_source_root() -> Path:
    """The source checkout the installed kit comes from (editable install), holding setup.cfg."""
    root = Path(__file__).resolve().parents[2]  # paddy/kaggle/kit.py -> the checkout
    if not (root / "setup.cfg").is_file() and not (root / "pyproject.toml").is_file():
        raise ConfigError(f"cannot package the kit: {root} is not a source checkout; run from a clone (pip install -e)")
    return root


def _installed(name: str) -> Distribution:
    try:
        return distribution(name)
    except PackageNotFoundError:
        raise ConfigError(f"--with-deps: {name} is not installed here; pip install it first") from None


def dependency_requirements() -> list[str]:
    """Pinned requirements of DEPENDENCY_WHEELS at the versions installed here (what the kit was tested with)."""
    return [f"{name}=={_installed(name).version}" for name in DEPENDENCY_WHEELS]


def dependency_closure() -> list[str]:
    """Pins of DEPENDENCY_WHEELS and everything they need (no extras), less what every Kaggle image has."""
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


def build_wheels(dest: str | Path, with_deps: bool = False) -> list[Path]:
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


def source_digest(with_deps: bool = False) -> str:
    """A digest of everything the kit's wheel is built from (and the pinned dependencies when packed too)."""
    root = kit_source_root()
    files = [root / name for name in SOURCE_FILES if (root / name).is_file()]
    files += [p for p in (root / "paddy").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    digest = hashlib.sha256("\n".join(dependency_closure() if with_deps else []).encode())
    for path in sorted(files):
        digest.update(f"{path.relative_to(root)}\n".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def is_kit_stage(folder: Path) -> bool:
    """True when `folder` is a staging folder the kit made: it holds STAGE_MARKER (or, made before the marker
    existed, it has its `.source` record beside it and only the kit's own files inside)."""
    if (folder / STAGE_MARKER).is_file():
        return True
    names = [p.name for p in folder.iterdir()]
    own = all(n.endswith(".whl") or n in (REQUIREMENTS_FILE, DATASET_METADATA_FILE) for n in names)
    return own and folder.with_name(folder.name + ".source").is_file()


def check_stage(out: str | Path) -> Path:
    """The staging folder as an absolute path, when the kit may (re)build it; ConfigError (one line) otherwise.

    The kit replaces its staging folder on every rebuild, so it must never be a folder the kit did not make."""
    out = Path(out).absolute()
    here = Path.cwd()
    if out == here or out in here.parents:
        raise ConfigError(f"--stage {out} is the current folder or holds it; give the kit a folder of its own "
                          f"(default {DEFAULT_STAGE_TEXT})")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--stage {out} is a file; give the kit a folder of its own (default {DEFAULT_STAGE_TEXT})")
    if out.is_dir() and any(out.iterdir()) and not is_kit_stage(out):
        raise ConfigError(f"--stage {out} is not empty and not a kit staging folder (no {STAGE_MARKER}); it would "
                          f"be replaced: choose a new or empty folder (default {DEFAULT_STAGE_TEXT})")
    return out


def package_kit(user: str, out: str | Path, with_deps: bool = False) -> tuple[dict, str]:
    """Build the kit dataset folder `out` (wheels + dataset-metadata.json); returns (metadata, digest).

    The wheels are rebuilt only when the source changed since the last build into `out` (`<out>.source`). A
    folder the kit did not make (no STAGE_MARKER) is refused, never replaced.
    """
    out = check_stage(out)
    source = source_digest(with_deps)
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
        check_stage(out)  # again, just before replacing it: the wheels took a while to build
        with atomic.atomic_dir(out, replace=True) as folder:  # the old stage goes only once the new one is in
            for path in [*wheels, *Path(tmp).glob(REQUIREMENTS_FILE)]:
                (folder / path.name).write_bytes(path.read_bytes())
            atomic.write_json(folder / DATASET_METADATA_FILE, meta)
            (folder / STAGE_MARKER).write_text("made by paddy kernels push; replaced on every rebuild of the kit\n")
    atomic.write_text(record, source + "\n")
    return meta, digest
