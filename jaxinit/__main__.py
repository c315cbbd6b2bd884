"""``python -m jaxinit``: the same command line as ``jaxinit``."""

from jaxinit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
