import pytest
import torch

from losstools import data, models

# One thread: on these 2-core machines, torch's second thread stalls erratically when anything else runs
# (a 6x6 convolution measured 0.1 ms on one thread and 300 ms on two under load).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_classification(n=12, d=3, c=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randint(0, c, (n,), generator=g)


def tiny_regression(n=12, d=3, k=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, k, generator=g, dtype=dtype)


def tiny_mlp(sizes=(3, 4, 3), activation="tanh", seed=0):
    return models.mlp(list(sizes), activation=activation, seed=seed).double()


@pytest.fixture(scope="session")
def digits64():
    return data.digits().to(dtype=torch.float64)


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """The documentation site as CI builds it: ``sphinx-build -W --keep-going -n`` (warnings are errors).

    ``LOSSTOOLS_SITE=<folder>`` reuses a site just built that way (``.ci/run`` does, after its own build step)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if os.environ.get("LOSSTOOLS_SITE"):
        return Path(os.environ["LOSSTOOLS_SITE"]).resolve()
    pytest.importorskip("myst_nb", reason="the docs extra is not installed (pip install -e '.[docs]')")
    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("site") / "html"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", str(root / "docs"), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, f"the site does not build cleanly:\n{done.stderr[-5000:]}"
    return out
