"""The floor under the sharpness diagnostic's cost on the medium workload (issue 22, acceptance 5).

An estimate of the top Hessian eigenvalue of the full-batch training loss needs at least one
Hessian-vector product on the full batch. This script times, in one process and in plain JAX
(no jaxinit code, so it measures the arithmetic, not the engine), the pieces that compare:

* ``10 steps``: ten SGD steps on minibatches of 256 (what runs between two logged steps of
  ``bench_engine.py --workload medium``, ``log_every = 10``);
* ``gradient``: one gradient of the full-batch (1,024-point) loss;
* ``hvp rev-rev`` / ``hvp fwd-rev``: one full-batch Hessian-vector product, ``jax.vjp`` of
  ``jax.grad`` (what jaxinit uses) and ``jax.jvp`` of ``jax.grad``, each including the forward
  and backward pass it linearises around.

All vmapped over 256 runs of a 16-64-64-1 tanh MLP with their own weights, MSE loss, float32.
The cheapest estimate costs one product, so ``1 + hvp / (10 steps)`` is what an estimate every
10 steps costs at the least with products as fast as these (``benchmarks/README.md`` counts
their multiply-adds)::

    python benchmarks/sharpness_floor.py            # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

WIDTHS = (16, 64, 64, 1)


def init(key: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
    keys = jax.random.split(key, len(WIDTHS) - 1)
    return [
        (jax.random.normal(k, (i, o)) / jnp.sqrt(i), jnp.zeros(o))
        for k, i, o in zip(keys, WIDTHS[:-1], WIDTHS[1:])
    ]


def apply(params: list, x: jax.Array) -> jax.Array:
    for i, (w, b) in enumerate(params):
        x = x @ w + b
        x = jnp.tanh(x) if i < len(params) - 1 else x
    return x


def mse(params: list, x: jax.Array, y: jax.Array) -> jax.Array:
    """``1/(2N) Σ ‖f(x) − y‖²``, jaxinit's ``mse``."""
    return 0.5 * jnp.mean(jnp.sum((apply(params, x) - y) ** 2, axis=-1))


def cpu_ms(fn, *args, repeat: int) -> float:
    """CPU milliseconds per call of ``jit(fn)``, after a warm-up call."""
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    start = time.process_time()
    for _ in range(repeat):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.process_time() - start) / repeat * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=256)
    p.add_argument("--points", type=int, default=1024)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()

    x = jax.random.normal(jax.random.key(1), (args.points, WIDTHS[0]))
    y = jnp.sin(2 * x[:, :1]) + 0.3 * x[:, 1:2]
    params = jax.vmap(init)(jax.random.split(jax.random.key(0), args.runs))
    tangent = jax.tree.map(jnp.ones_like, params)
    full = lambda q: mse(q, x, y)  # noqa: E731

    def ten_steps(q):
        def step(q, t):
            i = (t * args.batch) % args.points
            xb = jax.lax.dynamic_slice_in_dim(x, i, args.batch)
            yb = jax.lax.dynamic_slice_in_dim(y, i, args.batch)
            g = jax.grad(mse)(q, xb, yb)
            return jax.tree.map(lambda a, b: a - 0.05 * b, q, g), None

        return jax.lax.scan(step, q, jnp.arange(10))[0]

    pieces = {
        "10 steps": (jax.vmap(ten_steps), params),
        "gradient": (jax.vmap(jax.grad(full)), params),
        "hvp rev-rev": (
            jax.vmap(lambda q, v: jax.vjp(jax.grad(full), q)[1](v)[0]),
            params,
            tangent,
        ),
        "hvp fwd-rev": (
            jax.vmap(lambda q, v: jax.jvp(jax.grad(full), (q,), (v,))[1]),
            params,
            tangent,
        ),
    }
    print(
        f"jax {jax.__version__}, {args.runs} runs of {'-'.join(map(str, WIDTHS))} tanh, "
        f"{args.points} points, minibatch {args.batch}; CPU ms per call, best of 2 rounds"
    )
    times = {
        name: min(cpu_ms(fn, *a, repeat=args.repeat) for _ in range(2))
        for name, (fn, *a) in pieces.items()
    }
    steps = times["10 steps"]
    for name, ms in times.items():
        print(f"  {name:12s} {ms:9.1f} ms   {ms / steps:5.2f} x the 10 steps")
    best = min(times["hvp rev-rev"], times["hvp fwd-rev"])
    print(f"an estimate of one product every 10 steps: {1 + best / steps:.2f}x the training")


if __name__ == "__main__":
    main()
