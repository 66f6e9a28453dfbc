"""The layering rules of docs/architecture.md, checked: `import cnnlab` loads no trainer, and only
the train verb and the experiments that train import `cnnlab.train`."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlab

PACKAGE = Path(cnnlab.__file__).parent
# The modules allowed to import the trainer: the train verb, compare --train and the experiments' arms.
TRAINING_USERS = {"cli/train.py", "analysis/compare.py", "experiments/arms.py"}
HEAVY = ("cnnlab.train", "rich", "torch.nn.parallel", "torch.distributed")


def _loaded_by(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


@pytest.mark.slow
def test_import_cnnlab_loads_no_trainer_no_ddp_and_no_rich():
    extra = _loaded_by("import torch; import cnnlab") - _loaded_by("import torch")
    assert not [m for m in extra if m.startswith(HEAVY)]
    assert "cnnlab.rundir" in extra  # the check sees what cnnlab loads: load_run is public


@pytest.mark.slow
def test_the_check_sees_a_trainer_import():  # negative control for the test above
    extra = _loaded_by("import torch; import cnnlab.train") - _loaded_by("import torch")
    assert "cnnlab.train.loop" in extra and "rich" in extra


def _imports_trainer(path: Path) -> bool:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = module.rsplit(".", node.level)[0] if node.level else ""
            target = f"{base}.{node.module}" if node.level and node.module else base or node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        if any(n == "cnnlab.train" or n.startswith("cnnlab.train.") for n in names):
            return True
    return False


def test_only_training_code_imports_the_trainer():
    users = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.parent.name != "train" and _imports_trainer(p)
    }
    assert users <= TRAINING_USERS
    assert _imports_trainer(PACKAGE / "experiments" / "arms.py")  # the check finds a real one
