"""Measurement helpers of the benchmarks: peak memory, timing, the machine a result was measured on.

Peak memory on the CPU
----------------------
PyTorch has no CPU allocator statistics (no `torch.cpu.max_memory_allocated`), and `tracemalloc` sees only Python
objects. We measure the process's resident set size (RSS) from the kernel instead:

1. `gc.collect()` and glibc `malloc_trim(0)`: freed memory that malloc still holds goes back to the kernel, so the
   resident set is (close to) the live data before the step;
2. write `5` to `/proc/self/clear_refs` (Linux >= 4.0): the kernel resets the high-water mark `VmHWM` to the current
   RSS;
3. run the step; `peak = VmHWM - VmRSS(before)`.

This counts every byte the step touched and held at once (tensors, autograd buffers, oneDNN/MKL scratch, malloc
fragmentation): an upper bound on live tensor bytes, and what decides whether a job fits in RAM. A calibration
(`calibrate_peak_memory`) allocates a known tensor inside the window and checks the reading; the benchmarks print
it. On a GPU the benchmarks use `torch.cuda.max_memory_allocated` instead (reset per measurement).

Timing on a shared machine
--------------------------
Variants are interleaved (A B A B ...) so slow drifts hit both alike, and we report the median (and the best) of the
repeats plus the process CPU time. The scripts set `OMP_WAIT_POLICY=PASSIVE` (unless already set) before torch is
imported: with the default policy, an OpenMP worker waiting at a barrier spins, and when another process holds the
other core every one of the thousands of small ops of a training step waits a scheduler time slice. Measured here
with a 2-thread job running beside us (T=16, P=729): base step 11.5 s with spinning vs 3.6 s passive, and an AR/base
ratio of 1.9 vs 3.2 (1 thread: 3.0; analytic FLOP ratio 3.2) -- spinning distorts the ratio, passive does not.
On an idle machine the passive policy costs a few % of wall time.
"""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable

import torch


try:
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: malloc_trim unavailable
    _LIBC = None


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """Context manager: `.peak_mib` = peak memory growth during the block (RSS high-water mark, or CUDA allocator)."""

    def __init__(self, device: str = "cpu"):
        self.device = torch.device(device)
        self.peak_mib = float("nan")

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self._base = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mib = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self.peak_mib = (_status_kib("VmHWM") - self._base) / 1024
        return False


def calibrate_peak_memory(mib: int = 256) -> float:
    """Reading of `PeakMemory` for one `mib`-MiB tensor written and freed inside the window (expect ~`mib`)."""
    with PeakMemory() as m:
        x = torch.empty(mib * 2**20 // 4, dtype=torch.float32)
        x.fill_(1.0)
        del x
    return m.peak_mib


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str = "cpu", with_cpu: bool = False) -> tuple[float, ...]:
    """Run `fn()` once; return (wall seconds, peak MiB), plus process CPU seconds if `with_cpu`."""
    with PeakMemory(device) as m:
        sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return (seconds, m.peak_mib, cpu) if with_cpu else (seconds, m.peak_mib)


def median(xs: list[float]) -> float:
    """The median, NaN for no samples."""
    return statistics.median(xs) if xs else float("nan")


def machine() -> dict:
    """CPU, cores, RAM, threads, library versions, GPU, OpenMP wait policy and load: what a result depends on."""
    import transformers

    model_name = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model_name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:
        pass
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": model_name,
        "ram_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": os.getloadavg(),
    }
