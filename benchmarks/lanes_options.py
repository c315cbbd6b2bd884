"""The lanes layout's CPU rules on and off, in one process: XLA options and block budget.

Builds the training programs of ``jaxinit.run`` on a ``bench_engine.py`` tiny workload twice,
once as the engine does (``lanes.compiler_options``, ``lanes.BLOCK_BYTES``) and once with both
rules switched off (XLA's default options; nets with a hidden-to-hidden layer in the larger
block budget, as before session 13), then times the two alternately and prints the medians and
whether the final losses are bit-identical:

    python benchmarks/lanes_options.py --widths 32,32 --runs 4096 --steps 300
    python benchmarks/lanes_options.py --widths 2 --runs 16384 --steps 2000
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from jaxinit.engine.devices import use_cpu_cores


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="32,32", help="hidden widths, e.g. 32,32")
    p.add_argument("--runs", type=int, default=4096)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5, help="timed calls of each (median)")
    args = p.parse_args()
    use_cpu_cores(None)  # before anything starts a JAX backend, as `jaxinit run`

    from bench_engine import WORKLOADS, jaxinit_spec

    import jaxinit
    from jaxinit.engine import executors, lanes

    widths = tuple(int(w) for w in args.widths.split(","))
    w = WORKLOADS["tiny"]._replace(runs=args.runs, widths=widths, steps=args.steps)
    spec = jaxinit_spec(w)
    big = lanes.BLOCK_BYTES[1]
    rules = {
        "off": (lambda s: {}, (*lanes.BLOCK_BYTES[:2], big)),
        "on": (lanes.compiler_options, lanes.BLOCK_BYTES),
    }

    def use(name: str) -> None:
        lanes.compiler_options, lanes.BLOCK_BYTES = rules[name]

    programs, finals = {}, {}
    for name in rules:  # compile each once; keep its programs to swap in before each call
        use(name)
        executors._PROGRAMS.clear()
        finals[name] = jaxinit.run(spec, progress=False).final_loss.values
        programs[name] = dict(executors._PROGRAMS)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in rules}
    for _ in range(args.rounds):
        for name in rules:
            use(name)
            executors._PROGRAMS.clear()
            executors._PROGRAMS.update(programs[name])
            c0, t0 = cpu_seconds(), time.perf_counter()
            jaxinit.run(spec, progress=False)
            times[name].append((time.perf_counter() - t0, cpu_seconds() - c0))
    med = {n: np.median(np.array(t), axis=0) for n, t in times.items()}
    net = "-".join(map(str, (2, *widths, 1)))
    print(
        f"{net}, {args.runs} runs x {args.steps} steps, medians of {args.rounds}: "
        f"rules off {med['off'][0]:.3f} s wall / {med['off'][1]:.3f} s CPU, "
        f"on {med['on'][0]:.3f} / {med['on'][1]:.3f}: "
        f"{med['off'][0] / med['on'][0]:.2f}x wall, {med['off'][1] / med['on'][1]:.2f}x CPU; "
        f"final losses bit-identical: {np.array_equal(finals['off'], finals['on'])}"
    )


if __name__ == "__main__":
    main()
