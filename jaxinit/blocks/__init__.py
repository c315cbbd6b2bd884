"""Building blocks: layout primitives, activations, initializers, tasks and user data, models, diagnostics, clustering algorithms, random-net theory."""
