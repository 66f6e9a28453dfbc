import atexit
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# pyproject's addopts run the suite on one pytest-xdist worker per core: torch in each worker, and every
# process a test starts, then keeps to one thread, so that the workers do not fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

# Folders given to `cnnlab train --data` are packed into a cache under the data root: the suite's go to a
# folder of its own, here and in every process it starts, never to ./data.
os.environ["CNNLAB_DATA"] = tempfile.mkdtemp(prefix="cnnlab-test-data-")
atexit.register(shutil.rmtree, os.environ["CNNLAB_DATA"], True)


def cnnlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


@pytest.fixture(scope="session")
def cli():
    """``cli("train", "--epochs", "1")`` runs the command line in a subprocess."""
    return cnnlab


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real two-epoch training of ResNet-20 on mnist5k through the CLI, shared by the tests that read it.
    Under pytest-xdist the first worker to ask trains it and the others wait for it: one training per
    session, in a folder all the workers share."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's own
    out = root / "shared-runs" / "resnet20-mnist5k"
    with open(root / "trained_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (out / "result.json").exists():
            proc = cnnlab("train", "--epochs", "2", "--seed", "0", "--out", str(out))
            assert proc.returncode == 0, proc.stderr
            (out.parent / "train.stdout").write_text(proc.stdout)
    return out


@pytest.fixture(scope="session")
def tiny_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder of 300 training and 100 test digits from mnist5k: for tests that train several
    models and need each training to take a second, not ten."""
    from PIL import Image

    from cnnlab.data import load

    data = load("mnist5k")
    root = tmp_path_factory.mktemp("tiny_digits")
    for split, images, labels, per_class in (
        ("train", data.train_images, data.train_labels, 30),
        ("test", data.test_images, data.test_labels, 10),
    ):
        for c in range(10):
            folder = root / split / str(c)
            folder.mkdir(parents=True)
            for i, index in enumerate((labels == c).nonzero().flatten()[:per_class].tolist()):
                Image.fromarray(images[index, 0].numpy()).save(folder / f"{i}.png")
    return root


# The files that take longest, longest first (measured with --durations on a 2-core machine). The
# workers take files in collection order, so these go first and the short ones fill the end: no worker
# is left alone with a long file while the other idles.
SLOWEST_FILES = [
    "test_infer.py",
    "test_distributed.py",
    "test_export.py",
    "test_notebooks.py",
    "test_store.py",
    "test_resume.py",
    "test_failures.py",
    "test_paths.py",
    "test_cli.py",
    "test_recipe.py",
    "test_exp_init.py",
    "test_cli_fuzz.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOWEST_FILES)))  # stable: files stay whole
