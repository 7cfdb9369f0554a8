"""Shared fixtures: isolation from the user's Kaggle credentials and config, one torch thread, GPU skipping."""

import os

import pytest


def pytest_configure(config):
    """Tests never reach the network: huggingface_hub reads HF_HUB_OFFLINE when imported, so set it first."""
    os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Never read or write the real ~/.config/kaggle, and never let the Kaggle client print secrets."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".config" / "kaggle"))
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.mktemp("tmpdir")))
    for name in ("VERBOSE", "VERBOSE_OUTPUT", "KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY",
                 "KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_API_ENVIRONMENT", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: tiny models on 2-core machines run far slower on two when the other core is busy."""
    from paddy.core.runtime import torch_threads

    with torch_threads(1):
        yield


def pytest_collection_modifyitems(config, items):
    """Skip `gpu` tests cleanly when CUDA is not available."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("gpu"):  # not `in item.keywords`: a parameter id "gpu" would match
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory):
    """A small synthetic competition folder (120 train, 16 test, 48x64 px); copy it before damaging it."""
    from paddy.data.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("tiny_sample") / "data", n_train=120, n_test=16, size=(48, 64))


@pytest.fixture(scope="session")
def tiny_cache(tiny_sample, tmp_path_factory):
    """The tiny sample cached at 40x32 squish (paddy resize --format array), once; copy it before damaging it."""
    from paddy.data.array_cache import write_array_cache

    out = tmp_path_factory.mktemp("array") / "cache"
    write_array_cache(tiny_sample, out, (40, 32), "squish", workers=1, progress=False)
    return out
