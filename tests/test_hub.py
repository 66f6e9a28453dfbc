"""hubconf.py: torch.hub.load(checkout, NAME, source="local") builds any registered model, or loads a
run directory's trained weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import cnnlab

ROOT = Path(__file__).resolve().parent.parent


def test_every_registered_model_is_an_entry_point_and_nothing_else():
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    # What torch.hub.list shows: the module's public callables.
    entries = [name for name in dir(hub) if callable(getattr(hub, name)) and not name.startswith("_")]
    assert sorted(entries) == sorted(cnnlab.list_models())


@pytest.mark.parametrize("name", ["resnet20", "googlenet"])
def test_hub_builds_the_registered_model(name):
    torch.manual_seed(0)
    hub = torch.hub.load(str(ROOT), name, source="local", num_classes=7, in_chans=1)
    torch.manual_seed(0)
    direct = cnnlab.create_model(name, num_classes=7, in_chans=1)
    a, b = hub.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_hub_loads_a_runs_trained_weights(trained_run):
    hub = torch.hub.load(str(ROOT), "resnet20", source="local", run=str(trained_run))
    run = cnnlab.load_run(trained_run)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(hub(x), run(x))
    assert not hub.training
    # The controls: a run of another model, and build options beside a run, are refused.
    with pytest.raises(cnnlab.CnnlabError, match="holds a resnet20, not a resnet32"):
        torch.hub.load(str(ROOT), "resnet32", source="local", run=str(trained_run))
    with pytest.raises(cnnlab.CnnlabError, match="drop num_classes"):
        torch.hub.load(str(ROOT), "resnet20", source="local", run=str(trained_run), num_classes=3)
