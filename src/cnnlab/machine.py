"""What a measurement ran on: every recorded result and every model card names its machine, since a
number means little without it."""

from __future__ import annotations

import os
import platform
import resource
import sys
from typing import Any

import torch

from .runtime import cpu_has_bf16


def _cpu_model() -> str:
    """The CPU's marketing name, with its family, model and stepping where the OS tells them (two
    generations can share one name: "AMD EPYC" is Zen 4 as family 25 and Zen 5 as family 26)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not key.strip():  # the end of the first CPU's block
                    break
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    ids = [f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields]
    return f"{name} ({', '.join(ids)})" if ids else name


def machine() -> dict[str, Any]:
    """What a measurement ran on, for every recorded result: a number means little without its machine.
    ``cores`` counts the logical CPUs the OS shows; ``threads`` is what torch used of them."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cpu_bf16": cpu_has_bf16(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": platform.system(),
    }


def peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports kilobytes, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10
