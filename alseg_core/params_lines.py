"""params.yaml read line by line, so tools that add to it keep its comments and layout
(``alseg round add``, ``alseg params fill``): which lines open a section, and what a
section's header line holds."""

from __future__ import annotations

#: A header's value that leaves its section empty: the section can take a block of keys.
EMPTY_VALUES = ("", "{}", "null", "~")


def section_starts(lines: list[str]) -> list[int]:
    """Indices of the lines that open a top-level section (not indented, not a comment,
    not blank)."""
    return [i for i, line in enumerate(lines) if line[:1] not in ("", " ", "\t", "#")]


def header(line: str) -> tuple[str, str, str]:
    """A section header's (name, what follows its colon, its comment with the ``#``)."""
    name, _, rest = line.partition(":")
    value, hash_, comment = rest.partition("#")
    return name.strip(), value.strip(), hash_ + comment
