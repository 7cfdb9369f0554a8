"""paddy ensemble kernel.

Rendered by `paddy kernels render`: edit the plan, not this file.
"""

import glob
import subprocess
import sys
from pathlib import Path

TITLE = 'paddy tiny ensemble'
KIT = '/kaggle/input/paddy-kit'
DATA = '/kaggle/input/paddy-disease-classification'
OUT = Path('/kaggle/working')

# Competitions turn the internet off: install the kit from its dataset, and the pinned dependencies packed with it
# (paddy kernels push --with-deps), taking from the image whatever it already has.
PIP = [sys.executable, "-m", "pip", "install", "--no-index", "--quiet", "--find-links", KIT]
subprocess.run([*PIP, "--no-deps", *glob.glob(str(Path(KIT) / "paddy_kit-*.whl"))], check=True)
if (Path(KIT) / "requirements.txt").is_file():
    subprocess.run([*PIP, "-r", str(Path(KIT) / "requirements.txt")], check=True)

RUNS = ['/kaggle/input/paddy-tiny-01-02-resnet10t-squish96x72-64x48/resnet10t-squish96x72-64x48',
 '/kaggle/input/paddy-tiny-01-02-resnet10t-squish96x72-64x48/test_convnext-crop96x72-64x64']

from paddy.data.folder import find_data  # noqa: E402  (importable only after the install above)
from paddy.ensemble.blend import ensemble_runs, format_ensemble_table  # noqa: E402

print(format_ensemble_table(ensemble_runs(RUNS, find_data(DATA), OUT / "submission.csv",
                                          message=TITLE)))
