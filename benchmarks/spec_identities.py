"""The identity of every bundled training spec, one line each, so that two versions of jaxinit can
be diffed: a directory started by one resumes under the other only where the lines agree.

    python benchmarks/spec_identities.py > before.txt   # on the old version
    python benchmarks/spec_identities.py > after.txt    # on the new one
    diff before.txt after.txt

Each line: the spec's name, a sha256 (16 hex digits) of its run identity (jaxinit.engine.identity:
spec fields, the built-in model's parameter shapes, software) and one of its stored JSON. Probe
specs (nothing trained) are named and skipped.
"""

from __future__ import annotations

import hashlib
import json

from jaxinit.blocks.tasks import from_spec
from jaxinit.config import toml_io
from jaxinit.config.bundled import bundled_specs, find_spec
from jaxinit.config.spec import Spec
from jaxinit.engine.identity import describe_model, run_identity


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def main() -> None:
    for name in sorted(bundled_specs()):
        path = find_spec(name)
        if "kind" in toml_io.loads(path.read_text()):
            print(name, "probe")
            continue
        spec = Spec.from_toml(path)
        ident = run_identity(spec, describe_model(spec, from_spec(spec.task), None))
        print(
            name, _digest(json.dumps(ident, sort_keys=True, default=str)), _digest(spec.to_json())
        )


if __name__ == "__main__":
    main()
