"""A Griffe extension for the API pages: jaxinit's docstrings are Sphinx-flavoured plain text,
rendered here as Markdown. Doctest examples (``>>>`` lines and their output) become ``pycon``
code blocks, and ``:func:`name``` roles become code (``name``)."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|class|mod|data|attr|meth|obj|exc|const):`~?([^`]+)`")


def markdown(text: str) -> str:
    """Fence each run of doctest lines (up to the next blank line) and strip Sphinx roles."""
    out, lines, k = [], text.split("\n"), 0
    while k < len(lines):
        if lines[k].lstrip().startswith(">>>"):
            block = []
            while k < len(lines) and lines[k].strip():
                block.append(lines[k])
                k += 1
            out += ["```pycon", *block, "```"]
        else:
            out.append(ROLE.sub(r"`\1`", lines[k]))
            k += 1
    return "\n".join(out)


class SphinxText(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
