"""Plan files: a TOML list of ensemble members, each a TrainConfig, with shared defaults."""

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from paddy.core import accelerators, atomic
from paddy.core.config import TrainConfig, check_range
from paddy.core.errors import ConfigError

BUILTIN_PLANS = Path(__file__).parent.parent / "plans"
TOP_LEVEL_KEYS = {"defaults", "members", "budget_gb", "description", "accelerator", "devices"}
NONE = "none"  # TOML has no null: a member key set to "none" means None (split_seed: vary the split per member)
NULLABLE_KEYS = ("split_seed", "num_workers", "folds")
CPU_BUDGET_GB = 16.0  # accelerator = "cpu": the probe's budget then applies to the process's resident memory


@dataclass(frozen=True)
class Plan:
    """Ensemble members in order, the machine they train on, the memory budget per process, and the plan's origin.

    The budget defaults to the usable memory of one GPU of `accelerator` (t4x2: 15 GB, see paddy.core.accelerators).
    """

    members: tuple
    budget_gb: float = accelerators.budget_gb(accelerators.DEFAULT_ACCELERATOR)
    description: str = ""
    path: Path = None
    accelerator: str = accelerators.DEFAULT_ACCELERATOR
    devices: int = 1  # processes (GPUs) that train each member together, data-parallel

    def __post_init__(self):
        if isinstance(self.devices, bool) or not isinstance(self.devices, int) or self.devices < 1:
            raise ConfigError(f"devices must be a whole number >= 1, got {self.devices!r}")


def resolve_plan_path(plan):
    """A plan path as given, or the name of a built-in plan ("tiny", "road-to-the-top")."""
    path = Path(plan)
    if path.is_file():
        return path
    builtin = BUILTIN_PLANS / f"{plan}.toml"
    if builtin.is_file():
        return builtin
    names = ", ".join(sorted(p.stem for p in BUILTIN_PLANS.glob("*.toml")))
    raise ConfigError(f"plan {plan!r} not found: give a TOML file path or a built-in plan ({names})")


def parse_plan(data, where="plan"):
    """Build a Plan from parsed TOML: [defaults] apply to every [[members]] entry; unknown keys are errors."""
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(TOP_LEVEL_KEYS))}")
    members = data.get("members") or []
    if not members:
        raise ConfigError(f"{where}: no [[members]] entries; add at least one with an arch and size")
    defaults = data.get("defaults", {})
    # `members = [1]` or `defaults = 3` parse as TOML but are not tables of settings.
    if not isinstance(defaults, dict):
        raise ConfigError(f"{where}: defaults must be a table ([defaults] with key = value lines)")
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise ConfigError(f"{where}: members must be tables, one [[members]] header per member")
    configs = tuple(TrainConfig.from_dict(_nulls({**defaults, **member}), where=f"{where} member {i + 1}")
                    for i, member in enumerate(members))
    names = [c.run_name for c in configs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{where}: members share run name(s) {', '.join(repeated)}; give each a distinct name")
    machine = _accelerator(data.get("accelerator", accelerators.DEFAULT_ACCELERATOR), where)
    budget = data.get("budget_gb", accelerators.budget_gb(machine) or CPU_BUDGET_GB)
    if not isinstance(budget, (int, float)) or isinstance(budget, bool) or budget <= 0:
        raise ConfigError(f"{where}: budget_gb must be positive, got {budget!r}")
    check_range("budget_gb", budget, f"{where}: budget_gb")
    devices = data.get("devices", 1)
    if isinstance(devices, bool) or not isinstance(devices, int):
        raise ConfigError(f"{where}: devices must be a whole number, got {devices!r}")
    check_range("devices", devices, f"{where}: devices")
    return Plan(members=configs, budget_gb=float(budget), description=data.get("description", ""),
                accelerator=machine, devices=devices)


def _accelerator(key, where):
    try:
        return accelerators.accelerator(key).key
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def _nulls(member):
    return {k: None if k in NULLABLE_KEYS and v == NONE else v for k, v in member.items()}


def is_builtin(path):
    """True when `path` is one of the kit's own plan files (never rewrite those)."""
    return Path(path).resolve().parent == BUILTIN_PLANS.resolve()


def load_plan(plan):
    """Read and check a plan file (or built-in plan name)."""
    path = resolve_plan_path(plan)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:  # TOML files are UTF-8 text
        reason = error.reason if isinstance(error, UnicodeDecodeError) else error
        raise ConfigError(f"{path}: not valid TOML ({reason}); fix the file") from None
    parsed = parse_plan(data, where=str(path))
    return dataclasses.replace(parsed, path=path)


def plan_to_toml(plan):
    """Serialise a plan with every member fully resolved (what --write-plan saves)."""
    lines = []
    if plan.description:
        lines.append(f"description = {_toml_value(plan.description)}")
    lines.append(f"accelerator = {_toml_value(plan.accelerator)}")
    lines.append(f"budget_gb = {_toml_value(plan.budget_gb)}")
    if plan.devices != 1:
        lines.append(f"devices = {plan.devices}")
    for member in plan.members:
        lines += ["", "[[members]]"]
        lines += [f"{k} = {_toml_value(NONE if v is None else v)}" for k, v in member.to_dict().items()
                  if v is not None or k in NULLABLE_KEYS]
    return "\n".join(lines) + "\n"


def write_plan(plan, path):
    """Write a plan atomically; comments in the original file are not kept."""
    return atomic.write_text(path, plan_to_toml(plan))


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")  # basic strings: one line
    return f'"{text}"'
