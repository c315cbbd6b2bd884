"""The names of the figures, without importing matplotlib.

Spec validation checks a spec's ``report`` list against :data:`FIGURE_NAMES`; importing this
module (and so :mod:`jaxinit.plots`, which is lazy) neither loads ``matplotlib.pyplot`` nor
touches the user's backend. A test keeps this list equal to the keys of ``jaxinit.plots.FIGURES``.
"""

from __future__ import annotations

FIGURE_NAMES: tuple[str, ...] = (
    # plain sweeps (jaxinit.plots.core)
    "final_loss",
    "loss_curves",
    "success_rate",
    # basins (jaxinit.plots.basin_figures)
    "basin_sizes",
    "basin_loss_hist",
    "barrier_matrix",
    "restarts",
    "basin_map",
    "outcome_map",
    "spurious_rate",
    # init studies (jaxinit.plots.init_figures)
    "distinct_units",
    "layer_grad_norm",
    "scale_sweep",
    "time_to_threshold",
    "magic_numbers",
    "implicit_bias",
    "convex_control",
    "symmetry_breaking",
    # restarts of k-means / EM (jaxinit.plots.restart_figures)
    "p_global",
    "best_of_k",
    "distinct_optima",
    "excess_loss",
    # depth and scale (jaxinit.plots.depth_figures)
    "phase_diagram",
    "signal_propagation",
    "signal_phase",
    "jacobian_spectrum",
    # landscapes between minima (jaxinit.plots.landscape_figures)
    "disconnectivity",
)
"""Every figure ``jaxinit report`` can draw, by name."""

DEFAULT_FIGURES: tuple[str, ...] = ("final_loss", "loss_curves", "success_rate")
"""What ``jaxinit report`` draws when a spec lists no ``report`` figures."""
