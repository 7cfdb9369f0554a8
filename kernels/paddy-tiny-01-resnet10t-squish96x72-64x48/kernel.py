"""paddy member kernel.

Rendered by `paddy kernels render`: edit the plan, not this file.
"""

import glob
import subprocess
import sys
from pathlib import Path

TITLE = 'paddy tiny 01 resnet10t-squish96x72-64x48'
KIT = '/kaggle/input/paddy-kit'
DATA = '/kaggle/input/paddy-disease-classification'
OUT = Path('/kaggle/working')

# Competitions turn the internet off: install the kit from its dataset, and the pinned dependencies packed with it
# (paddy kernels push --with-deps), taking from the image whatever it already has.
PIP = [sys.executable, "-m", "pip", "install", "--no-index", "--quiet", "--find-links", KIT]
subprocess.run([*PIP, "--no-deps", *glob.glob(str(Path(KIT) / "paddy_kit-*.whl"))], check=True)
if (Path(KIT) / "requirements.txt").is_file():
    subprocess.run([*PIP, "-r", str(Path(KIT) / "requirements.txt")], check=True)

CONFIG = {'arch': 'resnet10t', 'size': [64, 48], 'item_size': [96, 72], 'item_method': 'squish',
          'min_scale': 0.75, 'epochs': 1, 'lr': 0.01, 'bs': 16, 'accum': 1, 'finetune': False,
          'pretrained': False, 'seed': 42, 'split_seed': 42, 'valid_pct': 0.2, 'targets': ['label'],
          'target_weights': [1.0], 'tta': 'flip', 'name': '', 'folds': None, 'num_workers': 0,
          'device': 'auto'}

from paddy.core.config import TrainConfig  # noqa: E402  (importable only after the install above)
from paddy.core.runtime import progress_bars  # noqa: E402
from paddy.data.folder import find_data  # noqa: E402
from paddy.probe.run import choose_accum  # noqa: E402
from paddy.vision.run import train_run  # noqa: E402

config = TrainConfig.from_dict(CONFIG)
with progress_bars(False):  # the kernel's log keeps fastai's epoch table, not thousands of progress-bar updates
    print(train_run(find_data(DATA), config, OUT / config.run_name, budget_gb=4.0,
                    choose_accum=choose_accum))
