"""The sweep's description: the spec schema and TOML, the bundled specs, the declared per-run outputs."""
