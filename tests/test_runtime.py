"""runtime.keep_freed_memory: the allocator setting the cnnlab command makes before its first tensor."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

import cnnlab.cli
from cnnlab import runtime

# Frees a 256 MB tensor whose every page was touched; prints whether the setting was made and how many
# MB of it the process still holds.
PROBE = """
import sys, torch
from cnnlab import runtime
def rss_mb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) / 1024
kept = runtime.keep_freed_memory() if sys.argv[1] == "keep" else None
before = rss_mb()
x = torch.ones(2 ** 26)
del x
print(kept, round(rss_mb() - before))
"""
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}


def probe(mode: str, **env: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], env={**CLEAN, **env}, capture_output=True,
                          text=True, check=True)  # fmt: skip
    kept, held = done.stdout.split()
    return kept, int(held)


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or "LD_PRELOAD" in os.environ, reason="glibc's own malloc"
)
def test_a_freed_tensors_memory_stays_for_the_next_unless_the_user_set_malloc_up():
    kept, held = probe("keep")
    assert kept == "True" and held >= 200  # the 256 MB stay with the process, for the next tensor
    assert probe("system")[1] < 50  # control: glibc as it comes hands the block back at once
    kept, held = probe("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert kept == "False" and held < 50  # a user's own setting of what it would change wins
    assert probe("keep", GLIBC_TUNABLES="glibc.pthread.rseq=0:glibc.malloc.mmap_max=4")[0] == "False"
    # Settings it leaves alone do not stop it.
    assert probe("keep", MALLOC_ARENA_MAX="2")[0] == "True"
    assert probe("keep", GLIBC_TUNABLES="glibc.malloc.arena_max=2")[0] == "True"


def test_the_command_sets_it_before_running_the_verb_and_main_alone_does_not(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(runtime, "keep_freed_memory", lambda: calls.append("malloc") or True)
    assert cnnlab.cli.main(["models", "--json"]) == 0
    assert calls == []  # code that calls main keeps its process's malloc
    main = cnnlab.cli.main
    monkeypatch.setattr(cnnlab.cli, "main", lambda argv: calls.append("verb") or main(argv))
    assert cnnlab.cli.run(["models", "--json"]) == 0
    assert calls == ["malloc", "verb"] and capsys.readouterr().out.count("{") >= 2


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or "LD_PRELOAD" in os.environ, reason="glibc's own malloc"
)
def test_the_cnnlab_command_runs_with_freed_memory_kept_and_bench_says_so():
    args = ["bench", "resnet20", "--batch-size", "2", "--input", "3x32x32", "--steps", "1", "--warmup", "0"]
    proc = subprocess.run([sys.executable, "-m", "cnnlab", *args, "--min-seconds", "0", "--json"], env=CLEAN,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["malloc_kept"] is True  # python -m cnnlab goes through run
    assert runtime.freed_memory_kept() is False  # control: this process never ran the command
