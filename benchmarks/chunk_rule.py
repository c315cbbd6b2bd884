"""The default ``vmap`` chunk (``executors.default_chunk_runs``) against one chunk of every run,
through ``jaxinit.run``, over MLP widths, depths and minibatch sizes (issue 21).

Teacher-student regression (16 inputs, 1,024 points), tanh MLPs, SGD, 256 runs; the steps of each
configuration are chosen so that a call takes seconds. Each row: the rule's chunk size, then the
best of two calls (after a warm-up call) with the rule and with ``chunk_size = 256`` (one chunk,
trained on one CPU device), wall and CPU seconds, and the rule's speed-up.

    python benchmarks/chunk_rule.py            # ~5 min on an idle 2-core machine
"""

from __future__ import annotations

import os
import time

import jaxinit
from jaxinit.blocks.tasks import TASKS
from jaxinit.config.spec import Spec
from jaxinit.engine.executors import default_chunk_runs

RUNS = 256
CONFIGS = (  # (hidden widths, minibatch, steps)
    ((32,), 32, 400),
    ((32, 32, 32, 32), 1024, 60),
    ((64, 64), 256, 150),
    ((128, 128), 256, 60),
    ((256,), 1024, 30),
    ((256, 256, 256, 256), 32, 60),
)


def spec(widths: tuple[int, ...], batch: int, steps: int) -> dict:
    return {
        "task": {"name": "teacher_student", "in_dim": 16, "n_train": 1024},
        "model": {"name": "mlp", "widths": list(widths), "activation": "tanh"},
        "optimizer": {"name": "sgd", "learning_rate": 0.05},
        "train": {"steps": steps, "log_every": 10, "batch_size": batch},
        "axes": {"seed": RUNS},
    }


def best(sp: dict, chunk: int | None) -> tuple[float, float]:
    jaxinit.run(sp, progress=False, chunk_size=chunk)
    out = None
    for _ in range(2):
        t0, c0 = time.perf_counter(), time.process_time()
        jaxinit.run(sp, progress=False, chunk_size=chunk)
        t = (time.perf_counter() - t0, time.process_time() - c0)
        out = t if out is None or t[0] < out[0] else out
    return out


def main() -> None:
    jaxinit.use_cpu_cores()
    print(f"load {os.getloadavg()[0]:.2f}; {RUNS} runs per configuration")
    print(
        f"{'net':<22}{'batch':>6}{'steps':>6}{'chunk':>6}{'rule wall/cpu':>16}"
        f"{'one chunk wall/cpu':>20}{'speed-up':>9}"
    )
    for widths, batch, steps in CONFIGS:
        sp = spec(widths, batch, steps)
        s = Spec.from_dict(sp)
        task = TASKS["teacher_student"](in_dim=16, n_train=1024)
        chunk = min(default_chunk_runs(s, task, None, "vmap"), RUNS)
        (rw, rc), (ow, oc) = best(sp, None), best(sp, RUNS)
        net = "-".join(str(d) for d in (16, *widths, 1))
        print(
            f"{net:<22}{batch:>6}{steps:>6}{chunk:>6}{rw:>9.2f}/{rc:<6.2f}{ow:>12.2f}/{oc:<7.2f}"
            f"{ow / rw:>8.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
