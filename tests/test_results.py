"""docs/results.md is the render of the recorded JSON, docs/papers.md that of the registered paper
recipes, and the README and the other docs type no measured number.

Each page is rendered again here (from ``benchmarks/results/`` and ``docs/figures/``, or from the
recipes) and must equal the committed one; a changed number must render differently (the negative
control: the check would catch a stale page).
"""

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _render_module():
    spec = importlib.util.spec_from_file_location("render", ROOT / "benchmarks" / "render.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["render"] = module
    spec.loader.exec_module(module)
    return module


render = _render_module()


def test_results_page_is_the_render_of_the_json():
    page = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert page == render.render(ROOT), "docs/results.md is stale: run `make results`"


def test_papers_page_is_the_render_of_the_paper_recipes():
    page = (ROOT / render.PAPERS_PAGE).read_text(encoding="utf-8")
    assert page == render.render_papers(), "docs/papers.md is stale: run `make results`"


def test_a_changed_paper_recipe_changes_the_papers_page(monkeypatch):
    from cnnlab.models import resnet

    before = render.render_papers()
    changed = resnet.PAPER_RECIPE["resnet20"].replace(reports="CIFAR-10 test error 1.23% (Table 99)")
    monkeypatch.setitem(resnet.PAPER_RECIPE, "resnet20", changed)
    after = render.render_papers()
    assert "1.23% (Table 99)" in after and "1.23%" not in before
    row = "| `resnet20` | CIFAR-10 test error 1.23% (Table 99) | `cnnlab train --model resnet20 --data"
    assert row in after


@pytest.fixture
def copy_of_the_json(tmp_path: Path) -> Path:
    for rel in (render.RESULTS, render.FIGURES, render.EXPERIMENTS_DIR):
        shutil.copytree(ROOT / rel, tmp_path / rel, ignore=shutil.ignore_patterns("*.png"))
    return tmp_path


def test_a_changed_number_changes_the_page(copy_of_the_json: Path):
    assert render.render(copy_of_the_json) == render.render(ROOT)  # the copy alone changes nothing
    path = copy_of_the_json / render.RESULTS / "2026-11-28-epyc-2c-resnet18-train-sweep.json"
    data = json.loads(path.read_text())
    data["results"][-1]["images_per_s"] = 32.8  # a number typed by hand instead of measured
    path.write_text(json.dumps(data))
    changed = render.render(copy_of_the_json)
    assert changed != render.render(ROOT) and "| 32.8 |" in changed


def test_an_analysis_number_reaches_the_page_too(copy_of_the_json: Path):
    path = copy_of_the_json / render.FIGURES / "knn.json"
    data = json.loads(path.read_text())
    data["fit"]["r2"] = 0.95
    path.write_text(json.dumps(data))
    assert "| 0.95 |" in render.render(copy_of_the_json) and "| 0.95 |" not in render.render(ROOT)


def test_an_experiments_verdict_and_numbers_reach_the_page(copy_of_the_json: Path):
    path = copy_of_the_json / render.EXPERIMENTS_DIR / "templates.json"
    data = json.loads(path.read_text())
    data["verdict"], data["findings"][0]["evidence"] = "contradicts", "0.123 against 0.456"
    path.write_text(json.dumps(data))
    page, original = render.render(copy_of_the_json), render.render(ROOT)
    assert "0.123 against 0.456" in page and "0.123 against 0.456" not in original
    assert page.count("contradicts the claim") == original.count("contradicts the claim") + 1


def test_a_result_of_an_unknown_shape_is_an_error(copy_of_the_json: Path):
    (copy_of_the_json / render.RESULTS / "2099-01-01-new.json").write_text('{"speed": 1}')
    with pytest.raises(ValueError, match="no renderer"):
        render.render(copy_of_the_json)


def test_every_result_records_its_machine():
    for path in sorted((ROOT / render.RESULTS).glob("*.json")):
        machine = render.machine_of(json.loads(path.read_text()))
        assert machine is not None, f"{path.name} does not record its machine"
        assert machine["cpu"] and machine["cores"] and machine["torch"], path.name


RENDERED = (render.PAGE.name, render.PAPERS_PAGE.name)  # pages whose every number is rendered

# A measured quantity typed into prose: a percentage, a rate or a duration next to a digit.
MEASURED = re.compile(r"\d(\.\d+)?\s*(%|img/s|images/s|GFLOP/s|ms\b|s of |seconds|min\b|x faster)")


@pytest.mark.parametrize(
    "page",
    [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in RENDERED)],
    ids=lambda p: p.name,
)
def test_no_page_but_the_rendered_one_types_a_measured_number(page: Path):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # commands may say 0
    found = [m.group(0) for m in MEASURED.finditer(text)]
    assert not found, f"{page.name} types measured numbers {found}: render them into docs/results.md"
