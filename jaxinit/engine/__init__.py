"""The engine: validation, plans, the one run program and its layouts, devices, the store, labelled results, sweeps and probes."""
