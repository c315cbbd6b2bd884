"""Analysis of a sweep's endpoints: statistics, symmetry, basins, curvature, restarts, landscapes, maps."""
