"""The import rule and the layers: library modules import at the top, the CLI lazily, and --help stays light."""

import ast
import subprocess
import sys
from pathlib import Path

import paddy

PACKAGE = Path(paddy.__file__).parent
# `import kaggle` signs in at import time (DESIGN.md): the client wrapper imports it only when it is used.
LAZY_ALLOWED = {("kaggle/client.py", "kaggle"), ("kaggle/client.py", "kaggle.api.kaggle_api_extended")}


def function_level_imports(path):
    """(module imported, line) for every import inside a function or method of `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Import):
                    found += [(alias.name, sub.lineno) for alias in sub.names]
                elif isinstance(sub, ast.ImportFrom):
                    found.append((sub.module, sub.lineno))
    return found


def test_library_modules_import_what_they_use_at_the_top():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("cli/"):
            continue  # the CLI imports lazily so that `paddy --help` stays fast
        offenders += [f"{relative}:{line} imports {module}" for module, line in function_level_imports(path)
                      if (relative, module) not in LAZY_ALLOWED]
    assert not offenders, offenders


def test_help_loads_neither_torch_nor_fastai():
    # `paddy --help` and `paddy VERB --help` parse flags only: the heavy libraries wait for a command to run.
    code = ("import sys\nfrom paddy.cli.main import build_parser\nbuild_parser()\n"
            "print(','.join(m for m in ('torch', 'fastai', 'timm', 'pandas', 'kaggle') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_the_import_contracts_hold():
    # The same check .ci/run makes; here so a plain pytest run also fails on an upward import or a cycle.
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stdout[-2000:]
