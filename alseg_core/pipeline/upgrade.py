"""Bringing an older params.yaml up to the keys this version's ``dvc.yaml`` reads.

A release may add a key to a stage's params (e.g. ``al.plateau_patience``). DVC then
refuses to run any stage that lists it while params.yaml lacks it ("Parameters
'al.plateau_patience' are missing from 'params.yaml'"), though alseg itself would use
the key's default. ``alseg params fill`` writes each such key into params.yaml at its
default (a new key defaults to what ran before it existed), keeping the file's comments
and layout; ``dvc status`` then lists the finished stages as changed by a ``new:`` key,
and ``dvc commit -f <stage>`` records them without running anything (README).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from alseg_core import storage
from alseg_core.config import config_from_dict, load_config, strict_yaml_load
from alseg_core.params_lines import EMPTY_VALUES, header, section_starts
from alseg_core.pipeline.dvcfile import SEED_PARAMS
from alseg_core.pipeline.engine import STEP_PARAMS


def stage_params() -> list[str]:
    """Every params key (``section.key``, or a whole ``section``) some stage lists."""
    keys = {k for table in (STEP_PARAMS, SEED_PARAMS) for ks in table.values() for k in ks}
    return sorted(keys)


def _yaml_value(value: Any) -> str:
    """``value`` as one line of YAML flow style (a one-item list, brackets dropped)."""
    value = list(value) if isinstance(value, tuple) else value
    return yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]


def missing_params(raw: dict) -> dict[str, Any]:
    """The stage params ``raw`` (a params.yaml mapping) lacks, with their defaults:
    ``section.key`` -> value, or ``section`` -> its mapping of defaults."""
    defaults = load_config(None)
    out: dict[str, Any] = {}
    keys = stage_params()
    whole = {k for k in keys if "." not in k and raw.get(k) is None}
    for key in keys:
        section, _, name = key.partition(".")
        default = getattr(defaults, section)
        if key in whole:
            out[key] = {f.name: getattr(default, f.name) for f in dataclasses.fields(default)}
        elif name and section not in whole and not _has(raw.get(section), name):
            out[key] = getattr(default, name)
    return out


def _has(section: Any, name: str) -> bool:
    return isinstance(section, dict) and name in section


def fill_params(path: str) -> dict[str, Any]:
    """Write the stage params ``path`` lacks at their defaults; returns what was added.

    Keys go at the end of their section's block (created before ``rounds``, which
    ``alseg round add`` needs last); comments and every other line stay as they are. A
    section in flow style (``al: {...}``) is not edited: the error names the keys to add
    by hand. The file is rewritten atomically and only once the result validates.
    """
    text = storage.read_text(path)
    raw = strict_yaml_load(text, source=path) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    missing = missing_params(raw)
    if not missing:
        return {}
    lines = text.rstrip("\n").split("\n")
    by_section: dict[str, list[tuple[str, Any]]] = {}
    for key, value in missing.items():
        section, _, name = key.partition(".")
        by_section.setdefault(section, []).extend(value.items() if not name else [(name, value)])
    for section, items in by_section.items():
        top = section_starts(lines)
        heads = [i for i in top if header(lines[i])[0] == section]
        if heads and header(lines[heads[0]])[1] not in EMPTY_VALUES:
            keys = ", ".join(f"{section}.{name}" for name, _ in items)
            raise ValueError(
                f"{path}: section {section!r} is in flow style ({{...}} on one line); add "
                f"these keys by hand, at their defaults: {keys}"
            )
        if heads:
            at = heads[0]
            _, value, comment = header(lines[at])
            if value:  # {} / null: the section gets a block of keys
                lines[at] = f"{section}:" + (f"  {comment}" if comment else "")
            nxt = next((i for i in top if i > at), len(lines))
            # its indented lines (a comment at the margin belongs to what follows)
            body = [i for i in range(at + 1, nxt) if lines[i][:1] in (" ", "\t")]
            indent = " " * (len(lines[body[0]]) - len(lines[body[0]].lstrip())) if body else "  "
            end = (body[-1] + 1) if body else at + 1
        else:
            rounds = [i for i in top if header(lines[i])[0] == "rounds"]
            end = rounds[0] if rounds else len(lines)
            while rounds and end > 0 and lines[end - 1][:1] in ("", "#"):
                end -= 1  # before the comments and blank lines that open ``rounds``
            lines.insert(end, f"{section}:")
            indent, end = "  ", end + 1
        new = [f"{indent}{name}: {_yaml_value(value)}" for name, value in items]
        lines[end:end] = new
    new_text = "\n".join(lines) + "\n"
    config_from_dict(strict_yaml_load(new_text, source=path), source=path)  # validate first
    storage.write_bytes(path, new_text.encode())
    return missing
