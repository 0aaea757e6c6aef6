"""Shared test set-up: every test gets its own empty catalog root (and Minari root)."""
from __future__ import annotations

import pytest

from tests.synthetic import make_synthetic_dataset


@pytest.fixture(autouse=True)
def omrl_home(tmp_path_factory, monkeypatch):
    """Point ``OMRL_HOME`` (and ``MINARI_DATASETS_PATH``) at fresh temporary folders."""
    home = tmp_path_factory.mktemp("omrl_home")
    monkeypatch.setenv("OMRL_HOME", str(home))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path_factory.mktemp("minari")))
    return home


@pytest.fixture
def synthetic_dataset(omrl_home):
    """Id of a small complete point_robot_sparse dataset (4 tasks x 200 rows) in ``omrl_home``."""
    return make_synthetic_dataset(omrl_home)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread: the machine is shared, and one thread is also faster for
    tiny networks. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
