"""paddy lanes kernel.

Rendered by `paddy kernels render`: edit the plan, not this file.
"""

import glob
import subprocess
import sys
from pathlib import Path

TITLE = 'paddy tiny 01-02 resnet10t-squish96x72-64x48'
KIT = '/kaggle/input/paddy-kit'
DATA = '/kaggle/input/paddy-disease-classification'
OUT = Path('/kaggle/working')

# Competitions turn the internet off: install the kit from its dataset, and the pinned dependencies packed with it
# (paddy kernels push --with-deps), taking from the image whatever it already has.
PIP = [sys.executable, "-m", "pip", "install", "--no-index", "--quiet", "--find-links", KIT]
subprocess.run([*PIP, "--no-deps", *glob.glob(str(Path(KIT) / "paddy_kit-*.whl"))], check=True)
if (Path(KIT) / "requirements.txt").is_file():
    subprocess.run([*PIP, "-r", str(Path(KIT) / "requirements.txt")], check=True)

MEMBERS = [{'arch': 'resnet10t', 'size': [64, 48], 'item_size': [96, 72], 'epochs': 1, 'bs': 16,
            'finetune': False, 'pretrained': False, 'tta': 'flip', 'num_workers': 0},
           {'arch': 'test_convnext', 'size': [64, 64], 'item_size': [96, 72], 'item_method': 'crop',
            'epochs': 1, 'bs': 16, 'accum': 2, 'finetune': False, 'pretrained': False, 'tta': 'flip',
            'num_workers': 0}]

from paddy.core.config import TrainConfig  # noqa: E402  (importable only after the install above)
from paddy.core.plan import Plan  # noqa: E402
from paddy.core.runtime import exit_unless_gpus_usable, progress_bars  # noqa: E402
from paddy.data.folder import find_data  # noqa: E402
from paddy.probe.run import choose_accum  # noqa: E402
from paddy.vision.lanes import describe_result, failed_runs, train_plan_lanes  # noqa: E402

exit_unless_gpus_usable(expected=2)  # one line, exit 1: torch cannot run on this session's GPUs
plan = Plan(members=tuple(TrainConfig.from_dict(m) for m in MEMBERS), budget_gb=4.0, accelerator='t4x2')
with progress_bars(False):  # the kernel's log keeps fastai's epoch table, not thousands of progress-bar updates
    results = train_plan_lanes(find_data(DATA), plan, OUT, lanes=2, choose_accum=choose_accum)
print(*(describe_result(r) for r in results), sep="\n")
sys.exit(f"paddy: runs failed: {', '.join(failed_runs(results))}" if failed_runs(results) else 0)
