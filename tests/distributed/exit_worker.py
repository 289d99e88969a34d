"""Run by `torchrun --nproc_per_node 2` from tests/test_distributed.py: the exit-time abort of launched processes,
made deterministic, and `train.exit_without_finalizing` avoiding it.

Rank 1 finishes its work while native code is still inside gloo with the interpreter's lock released (a thread
waiting in `recv`); rank 0 answers 2 s later, while rank 1's interpreter is tearing down (an object whose `__del__`
keeps the teardown going for 4 s). The native thread then needs the interpreter back after finalization began:
with a normal exit the process aborts ("terminate called without an active exception", SIGABRT, exit -6, and the
launcher stops rank 0), the signature of the occasional abort of engine launches (process groups and their threads
outlive `destroy_process_group` under DDP and DeepSpeed). With `exit_without_finalizing` (`hard` mode) there is no
teardown for the thread to meet: both ranks exit 0.

    torchrun --nproc_per_node 2 tests/distributed/exit_worker.py normal|hard
"""

import sys
import threading
import time
from pathlib import Path

import torch
import torch.distributed as dist


sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))


class SlowTeardown:
    """Keeps the interpreter's teardown busy (its `__del__` runs when the module's globals are cleared)."""

    def __del__(self, sleep=time.sleep):  # `time` may already be gone when this runs
        sleep(4)


def main(mode: str) -> None:
    if mode not in ("normal", "hard"):
        raise ValueError(f"mode must be 'normal' or 'hard', got {mode!r}")
    dist.init_process_group("gloo")
    if dist.get_rank() == 0:
        time.sleep(2)
        dist.send(torch.ones(4), dst=1)
        time.sleep(5)  # stay alive until rank 1 has exited one way or the other
        return
    received = torch.zeros(4)
    threading.Thread(target=dist.recv, args=(received,), kwargs={"src": 0}, daemon=True).start()
    globals()["teardown"] = SlowTeardown()
    if mode == "hard":
        from train import exit_without_finalizing

        exit_without_finalizing()


if __name__ == "__main__":
    main(sys.argv[1])
