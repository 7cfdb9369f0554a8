"""paddy ensemble kernel: paddy tiny ensemble.

Rendered by `paddy kernels render`: edit the plan, not this file.
"""

import glob
import subprocess
import sys
from pathlib import Path

# Competitions turn the internet off: install the kit (and any dependency wheels packed with it) from its dataset.
WHEELS = sorted(glob.glob("/kaggle/input/paddy-kit/*.whl"))
subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet", *WHEELS], check=True)
DATA = "/kaggle/input/paddy-disease-classification"
OUT = Path("/kaggle/working")

RUNS = ['/kaggle/input/paddy-tiny-01-resnet10t-squish96x72-64x48/resnet10t-squish96x72-64x48',
 '/kaggle/input/paddy-tiny-02-test-convnext-crop96x72-64x64/test_convnext-crop96x72-64x64']

from paddy.data import find_data  # noqa: E402  (importable only after the install above)
from paddy.ensemble import ensemble_runs  # noqa: E402

print(ensemble_runs(RUNS, find_data(DATA), OUT / "submission.csv", message='paddy tiny ensemble'))
