"""`cnnlab bench`: the contract keys, their arithmetic, the baseline, infer mode, the compile fallback and
the peak probe.

Everything runs ResNet-20 on 3x32x32 batches of 4 for a step or two, with no minimum duration.
"""

import json
import os
import re

import pytest
import torch

import cnnlab.bench as bench_module
from cnnlab.analysis.summary import summarize
from cnnlab.bench import bench, peak_probe, sweep, sweep_configs
from cnnlab.cli import main as cnnlab_main
from cnnlab.machine import machine
from cnnlab.models import create_model
from cnnlab.runtime import channels_last_default, cpu_has_bf16
from cnnlab.traffic import bytes_moved

FAST = {"batch_size": 4, "input_size": (3, 32, 32), "steps": 2, "warmup": 1, "min_seconds": 0.0}
FAST_ARGS = ["--batch-size", "4", "--input", "3x32x32", "--steps", "2", "--warmup", "1", "--min-seconds", "0"]
CONTRACT = {
    "images_per_s", "ms_per_batch", "gflops_per_s", "peak_gflops_per_s", "utilization", "peak_rss_mb",
    "model", "mode", "batch_size", "input", "precision", "channels_last", "compile", "naive", "threads",
    "device", "torch", "steps", "warmup", "probe", "machine",
}  # fmt: skip
PROBE = {"op", "shape", "dtype", "repetitions", "threads", "gflops_per_s", "tried"}
MACS = summarize("resnet20", (3, 32, 32))["macs"]


def test_every_contract_key_with_consistent_arithmetic():
    r = bench("resnet20", **FAST)
    assert r.keys() >= CONTRACT
    assert r["model"] == "resnet20" and r["mode"] == "train" and r["input"] == [3, 32, 32]
    assert r["batch_size"] == 4 and r["warmup"] == 1 and r["steps"] >= 2 and r["naive"] is False
    assert (
        r["device"] == "cpu" and r["threads"] == torch.get_num_threads() and r["torch"] == torch.__version__
    )
    assert r["channels_last"] == channels_last_default(torch.device("cpu")) and r["compile"] is False
    assert r["images_per_s"] * r["ms_per_batch"] / 1000 == pytest.approx(4, rel=1e-3)
    # A training step: forward, and a backward of twice its cost.
    assert r["macs"] == MACS
    assert r["gflops_per_s"] == pytest.approx(MACS * 6 * r["images_per_s"] / 1e9, rel=1e-3)
    assert r["utilization"] == pytest.approx(r["gflops_per_s"] / r["peak_gflops_per_s"], rel=1e-3)
    # At most 1 on a quiet machine (benchmarks/results/*utilization*); here other work may share the cores.
    assert r["utilization"] > 0 and r["peak_gflops_per_s"] > 1 and r["peak_rss_mb"] > 50
    assert r["probe"].keys() >= PROBE and r["probe"]["gflops_per_s"] == r["peak_gflops_per_s"]
    assert r["probe"]["dtype"] == r["precision"] and r["machine"] == machine()
    # The memory it moves: every weight is read at least by the forward, the backward and the step.
    params = sum(p.numel() for p in create_model("resnet20", num_classes=1000, in_chans=3).parameters())
    assert r["bytes_per_image"] * r["batch_size"] > 3 * 4 * params
    assert r["gb_per_s"] == pytest.approx(r["bytes_per_image"] * r["images_per_s"] / 1e9, rel=1e-2)
    assert r["bandwidth_utilization"] == pytest.approx(r["gb_per_s"] / r["copy_gb_per_s"], rel=1e-2)
    json.dumps(r)  # plain JSON values only


def test_a_steps_traffic_is_what_each_operation_reads_and_writes_and_a_view_moves_nothing():
    x, y, z = torch.ones(100), torch.ones(100), torch.empty(100)
    assert bytes_moved(lambda: x + y) == 3 * 400  # two tensors read, one written
    assert bytes_moved(lambda: x.add_(y)) == 3 * 400  # x read and written, once each
    assert bytes_moved(lambda: torch.add(x, y, out=z)) == 3 * 400  # z written only
    assert bytes_moved(lambda: x.view(10, 10).t()) == 0
    assert bytes_moved(lambda: x.view(10, 10).t().contiguous()) == 2 * 400  # the copy alone
    # torch's fused SGD returns nothing; its schema marks the weights, gradients and momenta written.
    weight = torch.nn.Parameter(torch.ones(1000))
    weight.grad = torch.ones(1000)
    sgd = torch.optim.SGD([weight], lr=0.1, momentum=0.9, fused=True)
    sgd.step()
    assert bytes_moved(sgd.step) == 2 * 3 * 4000


@pytest.mark.slow
def test_tiny_steps_are_timed_for_the_minimum_duration():
    r = bench("resnet20", **{**FAST, "steps": 1, "min_seconds": 0.3})
    assert r["steps"] > 1 and r["steps"] * r["ms_per_batch"] > 150  # the median step times the count


@pytest.mark.parametrize("naive", [False, True])
def test_the_training_step_fuses_sgd_as_the_trainer_does_and_naive_keeps_torchs_default(naive, monkeypatch):
    made = []

    class Recording(torch.optim.SGD):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(torch.optim, "SGD", Recording)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.randn(2, 3, 2, 2), torch.tensor([0, 2])
    before = model[1].weight.detach().clone()
    bench_module.make_step(model, "train", x, y, torch.device("cpu"), None, naive=naive)()
    assert len(made) == 1 and made[0].defaults["fused"] is (None if naive else True)
    assert not torch.equal(model[1].weight, before)  # the step took


@pytest.mark.slow
def test_naive_overrides_precision_layout_and_compile(monkeypatch):
    def no_compile(*args, **kwargs):
        raise AssertionError("the naive baseline must not compile")

    monkeypatch.setattr(torch, "compile", no_compile)
    r = bench("resnet20", precision="bf16", channels_last=True, compile=True, naive=True, **FAST)
    assert (r["precision"], r["channels_last"], r["compile"], r["naive"]) == ("fp32", False, False, True)
    assert "compile_error" not in r


@pytest.mark.slow
def test_auto_precision_times_what_train_runs(monkeypatch):
    """On a CPU with bf16, `auto` trains EfficientNet in fp32 (runtime.CPU_FP32_FAMILIES), and bench
    times that; the others in bf16."""
    monkeypatch.setattr("cnnlab.runtime.cpu_has_bf16", lambda: True)
    fast = {**FAST, "batch_size": 2, "steps": 1, "warmup": 0}
    assert bench("efficientnet_b0", **fast)["precision"] == "fp32"
    assert bench("resnet20", **fast)["precision"] == "bf16"
    assert bench("efficientnet_b0", precision="bf16", **fast)["precision"] == "bf16"


@pytest.mark.slow
def test_infer_runs_the_prepared_model_in_eval_mode_without_gradients(monkeypatch):
    models, prepared = [], []
    create = bench_module.create_model
    monkeypatch.setattr(
        bench_module, "create_model", lambda *a, **k: models.append(create(*a, **k)) or models[-1]
    )
    prepare = bench_module.prepare_for_inference
    monkeypatch.setattr(
        bench_module,
        "prepare_for_inference",
        lambda m, naive, cl: prepared.append(naive) or prepare(m, naive, cl),
    )
    r = bench("resnet20", mode="infer", **FAST)
    models[:] = [m for m in models if m.fc.weight.device.type != "meta"]  # not the name check's
    assert r["mode"] == "infer" and prepared == [False]
    fused = prepare(models[0], False, False)  # what was timed: no BatchNorm left
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert not models[0].training and all(p.grad is None for p in models[0].parameters())
    assert r["gflops_per_s"] == pytest.approx(MACS * 2 * r["images_per_s"] / 1e9, rel=1e-3)
    bench("resnet20", mode="infer", naive=True, **FAST)
    assert prepared == [False, True]
    # The training path does leave gradients, and never goes through the inference transform.
    bench("resnet20", mode="train", **FAST)
    assert prepared == [False, True] and all(p.grad is not None for p in models[-1].parameters())


class FakeCompiled:
    """Stands in for torch.compile's module (the real compiler takes a minute on the CPU): calls go to
    the model and, as with torch's OptimizedModule of a model without ``__len__``, truth-testing fails."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.calls = model, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model(x)

    def __len__(self) -> int:
        raise TypeError(f"{type(self.model).__name__} does not support len()")


@pytest.mark.slow
def test_a_working_compile_is_what_gets_timed(monkeypatch):
    compiled = []
    monkeypatch.setattr(
        torch, "compile", lambda model, **kwargs: compiled.append(FakeCompiled(model)) or compiled[-1]
    )
    r = bench("resnet20", compile=True, **FAST)
    assert r["compile"] is True and "compile_error" not in r
    assert compiled[0].calls == 1 + r["warmup"] + r["steps"]  # the first call compiles


def _raise_at_compile(model, **kwargs):
    raise RuntimeError("no C++ compiler found\nand a second line")


def _raise_at_first_call(model, **kwargs):
    def compiled(*args):
        raise RuntimeError("unsupported op aten::frobnicate")

    return compiled


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fake", "message"),
    [(_raise_at_compile, "no C++ compiler found"), (_raise_at_first_call, "unsupported op aten::frobnicate")],
)
def test_a_failing_compile_falls_back_to_eager_with_one_warning(monkeypatch, capsys, fake, message):
    monkeypatch.setattr(torch, "compile", fake)
    r = bench("resnet20", compile=True, **FAST)
    assert r["compile"] is False and r["compile_error"] == f"RuntimeError: {message}"
    assert r["images_per_s"] > 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "warning" in err[0] and message in err[0] and "eager" in err[0]


@pytest.mark.slow
def test_json_prints_one_object_and_nothing_else(cli):
    proc = cli("bench", "resnet20", *FAST_ARGS, "--mode", "infer", "--naive", "--json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    out = json.loads(proc.stdout)  # the whole of stdout is the object
    assert list(out) == ["results"] and len(out["results"]) == 1
    assert out["results"][0].keys() >= CONTRACT and out["results"][0]["mode"] == "infer"


@pytest.mark.slow
def test_several_models_give_one_table_row_each(capsys):
    assert cnnlab_main(["bench", "resnet20", "plain20", "--naive", *FAST_ARGS]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "naive" in line]
    assert len(rows) == 2 and "resnet20" in rows[0] and "plain20" in rows[1]
    assert "images/s" in out and "util" in out and "(of copy)" in out
    assert all(re.search(r"[\d.]+ \([\d.]+%\)", row) for row in rows)  # each row's memory rate


def test_a_bad_model_name_fails_in_one_line_naming_the_closest(capsys):
    assert cnnlab_main(["bench", "resnet20", "resnet2O", *FAST_ARGS]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1  # checked before resnet20 was timed
    assert "resnet2O" in lines[0] and "resnet20" in lines[0]


@pytest.mark.slow
def test_sweep_rows_are_the_grid_with_speedups_over_naive(monkeypatch):
    monkeypatch.setattr(bench_module, "cpu_has_bf16", lambda: False)  # fp32 only: three rows
    rows = sweep(["resnet20"], **{**FAST, "steps": 1, "warmup": 0})
    assert [(r["naive"], r["precision"], r["channels_last"]) for r in rows] == [
        (True, "fp32", False), (False, "fp32", False), (False, "fp32", True),
    ]  # fmt: skip
    assert rows[0]["speedup"] == 1.0
    for r in rows:
        assert r.keys() >= CONTRACT
        assert r["speedup"] == pytest.approx(
            r["images_per_s"] / rows[0]["images_per_s"], abs=5e-4
        )  # rounded to 3 places


def test_sweep_grid_has_bf16_where_the_cpu_does_and_compile_rows_on_request(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(bench_module, "cpu_has_bf16", lambda: True)
    configs = sweep_configs(cpu, compile=True)
    assert configs[0] == {"naive": True} and len(configs) == 7
    assert {(c["precision"], c["channels_last"]) for c in configs[1:5]} == {
        (p, cl) for p in ("fp32", "bf16") for cl in (False, True)
    }
    assert [c["precision"] for c in configs[5:] if c.get("compile")] == ["fp32", "bf16"]
    monkeypatch.setattr(bench_module, "cpu_has_bf16", lambda: False)
    assert len(sweep_configs(cpu)) == 3


def test_the_probe_says_what_it_measured_and_its_best_is_the_ceiling():
    cpu = torch.device("cpu")
    p = peak_probe(cpu, None, sizes=(64,), repetitions=2)
    assert p.keys() >= PROBE and p["dtype"] == "fp32" and p["repetitions"] == 2
    assert p["threads"] == torch.get_num_threads()  # all of torch's threads, as the model steps use
    assert [row["op"] for row in p["tried"]] == ["matmul", "conv3x3"]
    assert p["tried"][0]["shape"] == [64, 64, 64] and p["tried"][1]["shape"] == [1, 16, 11, 11, 3]
    # The ceiling is at least every product it measured, the convolution's included.
    assert p["gflops_per_s"] == max(row["gflops_per_s"] for row in p["tried"]) > 0
    assert peak_probe(cpu, None, sizes=(64,), repetitions=2) is p  # once per process
    if cpu_has_bf16():
        assert peak_probe(cpu, torch.bfloat16, sizes=(64,), repetitions=2)["dtype"] == "bf16"


def test_the_probe_grows_until_a_product_is_long_enough_and_keeps_the_best(monkeypatch):
    # Scripted seconds per (op, size): no clock involved, so the choice is checked exactly.
    seconds = {("matmul", 1): 0.1, ("matmul", 2): 0.2, ("matmul", 4): 0.6, ("conv3x3", 1): 1e-3}
    seconds |= {("conv3x3", 2): 1.0}
    monkeypatch.setattr(
        bench_module, "_product", lambda op, n, device, dtype: ((lambda: (op, n)), [n], 2e9 * n**3)
    )
    monkeypatch.setattr(bench_module, "_best_seconds", lambda step, device, reps: seconds[step()])
    p = peak_probe(torch.device("cpu"), None, sizes=(1, 2, 4, 8), repetitions=3, long_enough=0.5)
    assert [(row["op"], row["shape"]) for row in p["tried"]] == [
        ("matmul", [1]), ("matmul", [2]), ("matmul", [4]), ("conv3x3", [1]), ("conv3x3", [2]),
    ]  # fmt: skip
    assert (p["op"], p["shape"], p["gflops_per_s"]) == ("conv3x3", [1], 2000.0)


def test_machine_records_what_a_result_ran_on():
    m = machine()
    assert m["cores"] == os.cpu_count() and m["torch"] == torch.__version__ and m["cpu"]
    assert m["threads"] == torch.get_num_threads() and m["cpu_bf16"] == cpu_has_bf16()
    json.dumps(m)
