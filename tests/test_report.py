"""`cnnlab report`: one self-contained HTML page from run directories and analysis outputs."""

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.report import build_report

DATA_URI = "data:image/png;base64,"
BLUE = np.array([31, 119, 180])  # matplotlib's first line colour, drawn in every figure below


def _png(path: Path, title: str) -> None:
    """A small real figure: a thick blue line, as an analysis or `cnnlab train` would draw one."""
    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.plot([1, 2, 3, 4], [0.3, 0.7, 0.85, 0.9], "o-", linewidth=4)
    ax.set(title=title, xlabel="epoch")
    fig.savefig(path, dpi=80)
    plt.close(fig)


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """An experiment directory as a course would leave it: a run under runs/, analyses under analysis/,
    one of them a new kind that the report has never heard of."""
    exp = tmp_path / "exp"
    run = exp / "runs" / "resnet20-mnist5k"
    run.mkdir(parents=True)
    (run / "config.json").write_text(
        json.dumps({"format_version": 1, "model": "resnet20", "num_classes": 10, "in_chans": 1})
    )
    result = {
        "model": "resnet20", "dataset": "mnist5k", "epochs": 2, "test_acc": 0.9337, "test_top5": 0.997,
        "test_loss": 0.243, "train_time_s": 14.9, "images_per_s": 633.5, "params": 269434,
        "precision": "bf16", "device": "cpu", "seed": 0,
    }  # fmt: skip
    (run / "result.json").write_text(json.dumps(result))
    (run / "metrics.csv").write_text("epoch,train_loss,test_acc\n1,2.07,0.154\n2,0.557,0.9337\n")
    _png(run / "curves.png", "resnet20 on mnist5k")

    analysis = exp / "analysis"
    analysis.mkdir()
    knn = {
        "dataset": "mnist5k", "train_size": 4000, "queries": 1000,
        "accuracy": {"l2": {"1": 0.938, "3": 0.938}, "cosine": {"1": 0.948, "3": 0.952}},
        "best": {"metric": "cosine", "k": 3, "accuracy": 0.9520000219345093},
        "timing": {"stored": [500, 1000], "seconds": [0.0059, 0.0204]},
    }  # fmt: skip
    (analysis / "knn.json").write_text(json.dumps(knn))
    _png(analysis / "knn.png", "k-NN")
    degradation = {
        "note": "<script>alert(1)</script> & more",
        "depths": [20, 32, 44, 56],
        "rows": [{"model": "plain56", "train_error": 0.0912, "curve": list(range(100))}],
        "matrix": [[0.1] * 10 for _ in range(10)],
    }
    (analysis / "degradation.json").write_text(json.dumps(degradation))
    _png(analysis / "degradation.png", "degradation")
    return exp


def test_the_report_embeds_the_runs_and_analyses_it_finds(experiment, tmp_path):
    out = tmp_path / "site" / "deep" / "report.html"  # a parent that does not exist yet
    r = build_report([experiment], out=out, title="Week 3")
    assert r["out"] == str(out) and r["images"] == 3 and r["skipped"] == []
    assert [a["name"] for a in r["analyses"]] == ["degradation", "knn"]
    assert [run["model"] for run in r["runs"]] == ["resnet20"]
    page = out.read_text()

    assert "<h1>Week 3</h1>" in page and "93.37%" in page and "99.70%" in page and "269,434" in page
    assert "resnet20-mnist5k" in page  # the run directory
    # knn's numbers: flattened "best", its table of tables, and a float cut to four digits.
    assert "best › accuracy" in page and "cosine" in page and "0.952<" in page
    # The unknown analysis: shown generically, its text escaped, its long lists named but not dumped.
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page and "<script" not in page
    assert "20, 32, 44, 56" in page and "plain56" in page and "matrix (10 x 10 list)" in page
    assert ", 99<" not in page and "rows › curve (in every row)" in page  # too long for a cell

    # Three images, all inside the page, each exactly the PNG on disk; no link leaves the page.
    images = re.findall(r'src="([^"]*)"', page)
    assert len(images) == 3 and all(src.startswith(DATA_URI) for src in images)
    embedded = {base64.b64decode(src[len(DATA_URI) :]) for src in images}
    on_disk = {p.read_bytes() for p in experiment.rglob("*.png")}
    assert embedded == on_disk
    assert 'src="http' not in page and "file:" not in page and "<link" not in page
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', page))


def test_a_directory_given_twice_is_reported_once(experiment, tmp_path):
    r = build_report([experiment, experiment / "runs"], out=tmp_path / "r.html")
    assert len(r["runs"]) == 1 and len(r["analyses"]) == 2


def test_an_unreadable_result_is_left_out_not_fatal(experiment, tmp_path):
    broken = experiment / "runs" / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    (broken / "result.json").write_text("{not json")
    r = build_report([experiment], out=tmp_path / "r.html")
    assert len(r["runs"]) == 1 and r["skipped"][0]["path"].endswith("broken")
    assert "result.json" in (tmp_path / "r.html").read_text()


def test_a_directory_with_nothing_to_report_is_refused(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.json").write_text("{}")  # no .png beside it: not an analysis
    with pytest.raises(CnnlabError, match="nothing to report"):
        build_report([tmp_path / "empty"], out=tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_report_from_the_command_line(cli, experiment, tmp_path):
    proc = cli("report", str(experiment), "--out", str(tmp_path / "r.html"), "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)  # one JSON object and nothing else
    assert r["images"] == 3 and Path(r["out"]).is_file()


@pytest.mark.slow
def test_a_missing_directory_is_one_line_on_stderr(cli, tmp_path):
    proc = cli("report", "no/such/dir", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no/such/dir does not exist" in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "report.html").exists()


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


# Injected into a copy of the page under test (the report itself has no script): once the page has
# loaded, it counts the images the browser decoded.
COUNT_IMAGES = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const drawn = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images", drawn + "/" + images.length);
});
</script>"""


def _render_in_browser(browser: str, page: Path, tmp_path: Path) -> tuple[str, list[str], np.ndarray]:
    """What headless Chromium made of ``page``: "drawn/all" images, its console lines, a screenshot."""
    checked = tmp_path / f"{page.stem}-checked.html"
    checked.write_text(page.read_text().replace("</body>", COUNT_IMAGES + "</body>"))
    shot = tmp_path / f"{page.stem}-shot.png"
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # CI runs as root, where the sandbox refuses to start
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",  # console messages and uncaught errors, as INFO:CONSOLE lines
            "--v=0",
            "--virtual-time-budget=5000",  # the load event has fired before the DOM is dumped
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            checked.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert shot.is_file(), proc.stderr[-2000:]
    found = re.search(r'data-images="(\d+/\d+)"', proc.stdout)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    with Image.open(shot) as im:
        assert im.size == (1200, 1600)
        pixels = np.asarray(im.convert("RGB")).astype(float)
    return (found.group(1) if found else "no count"), console, pixels


def _evaluated(run: Path) -> None:
    """``cnnlab eval``'s eval.json and figures beside ``run``, from made-up logits and images."""
    from cnnlab.failures import summarize, write_failures

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 10
    logits = torch.randn(200, 10, generator=g) + 3 * torch.nn.functional.one_hot(labels, 10)
    images = torch.randint(0, 256, (200, 1, 28, 28), generator=g, dtype=torch.uint8)
    result = json.loads((run / "result.json").read_text())
    result["images"] = 200
    write_failures(
        run, {**result, "failures": summarize(logits, labels, [str(c) for c in range(10)])}, images
    )


@pytest.mark.slow
def test_the_report_renders_in_a_browser(experiment, tmp_path):
    browser = _browser()
    if browser is None:
        if os.environ.get("CI"):  # .ci/run installs chromium: its absence there is a failure, not a skip
            pytest.fail("no chromium to render the report with: .ci/run should have installed it")
        pytest.skip("no chromium to render the report with")
    try:
        subprocess.run([browser, "--version"], capture_output=True, timeout=30, check=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        if os.environ.get("CI"):
            pytest.fail(f"{browser} does not run")
        pytest.skip(f"{browser} does not run here")  # e.g. Ubuntu's stub that wants a snap
    _evaluated(experiment / "runs" / "resnet20-mnist5k")
    out = tmp_path / "report.html"
    built = build_report([experiment], out=out)
    assert built["images"] == 6  # curves, knn, degradation, and the run's three failure figures
    drawn, console, pixels = _render_in_browser(browser, out, tmp_path)
    assert drawn == "6/6"
    assert console == []
    assert pixels.std() > 20  # not a blank page
    # The embedded figures were decoded and drawn: their blue line is on screen.
    # (Tight enough that the blue of the page's own links does not count.)
    blue = (np.abs(pixels - BLUE).max(axis=-1) < 12).sum()
    assert blue > 1000, blue

    # Negative control: one figure's bytes damaged and a script error, which the same checks catch.
    page = out.read_text()
    start = page.index(DATA_URI) + len(DATA_URI)
    broken = tmp_path / "broken.html"
    broken.write_text(
        page[:start]
        + "AAAA"
        + page[start + 200 :].replace("</body>", "<script>undefinedFunction();</script></body>", 1)
    )
    drawn, console, _ = _render_in_browser(browser, broken, tmp_path)
    assert drawn == "5/6"
    assert len(console) == 1 and "undefinedFunction" in console[0]


def test_an_experiment_shows_its_claim_verdict_findings_and_arms(tmp_path):
    from cnnlab.experiments.claims import finding, spread

    exp = tmp_path / "lrn"
    exp.mkdir()
    result = {
        "experiment": "lrn",
        "claim": "LRN tames <peaks>.",
        "verdict": "cannot tell",
        "findings": [
            finding("LRN lowers the peak", "supports", "2.1 against 3.4"),
            finding("LRN is as accurate as BN", "cannot tell", "98.1% against 98.3%"),
        ],
        "columns": [["arm", "arm", "int"], ["test_acc", "test accuracy", "pct"]],
        "arms": [{"arm": "lrn", "test_acc": spread([0.97, 0.99])}, {"arm": "bn", "test_acc": 0.5}],
        "setup": {"data": "mnist5k", "seeds": [0, 1]},
    }
    (exp / "lrn.json").write_text(json.dumps(result))
    _png(exp / "lrn.png", "lrn")
    build_report([exp], out=tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "Claim: LRN tames &lt;peaks&gt;." in page
    assert 'class="verdict unsure">Verdict: cannot tell: the arms differ' in page
    assert '<b class="yes">supports</b>: LRN lowers the peak' in page and "(2.1 against 3.4)" in page
    assert "98.00 ± 1.41%" in page and "50.00%" in page and "seeds 0, 1" in page
    assert "Also in lrn.json" not in page  # not the generic tables of an analysis


def test_evaluated_runs_show_where_they_fail_and_runs_of_one_dataset_side_by_side(experiment, tmp_path):
    run = experiment / "runs" / "resnet20-mnist5k"
    html = tmp_path / "before.html"
    build_report([experiment], out=html)
    assert 'id="failures"' not in html.read_text()  # nothing evaluated, nothing shown

    _evaluated(run)
    twin = experiment / "runs" / "twin"
    shutil.copytree(run, twin)
    result = json.loads((twin / "eval.json").read_text())
    result["failures"]["calibration"]["ece"] = 0.4321
    (twin / "eval.json").write_text(json.dumps(result))
    built = build_report([experiment], out=tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert built["images"] == 2 * 4 + 2  # the two runs' curves and failure figures, and two analyses
    assert 'id="failures-0"' in page and 'id="failures-1"' in page
    assert "Runs of the same data, side by side" in page
    assert "43.21%" in page  # the twin's ECE, in the table comparing the two
    assert page.count('alt="' + str(twin) + ': confusion"') == 2  # its own section and the comparison


def test_an_eval_json_of_another_shape_leaves_the_run_without_failures_not_the_report(experiment, tmp_path):
    run = experiment / "runs" / "resnet20-mnist5k"
    _evaluated(run)
    good = json.loads((run / "eval.json").read_text())
    for broken in (
        [1, 2],
        {**good, "failures": {**good["failures"], "calibration": 0.1}},
        {**good, "failures": {**good["failures"], "per_class": [{"class": "0"}]}},
        {**good, "failures": {**good["failures"], "confused_pairs": ["3 as 5"]}},
    ):
        (run / "eval.json").write_text(json.dumps(broken))
        built = build_report([experiment], out=tmp_path / "report.html")
        assert [s["path"] for s in built["skipped"]] == [str(run / "eval.json")]
        assert 'id="failures"' not in (tmp_path / "report.html").read_text()
    (run / "eval.json").write_text(json.dumps(good))  # negative control: the same run, shown
    assert build_report([experiment], out=tmp_path / "report.html")["skipped"] == []
    assert 'id="failures"' in (tmp_path / "report.html").read_text()
