"""House rules: the library never imports the orchestration layer."""

from __future__ import annotations

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "alseg_core"


def test_alseg_core_never_imports_prefect_or_dvc():
    offenders = []
    for path in LIB.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {n}" for n in names if n.split(".")[0] in {"prefect", "dvc"}
            ]
    assert offenders == []


def test_only_storage_opens_files():
    offenders = []
    for path in LIB.rglob("*.py"):
        if path.name == "storage.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_no_pickle_and_every_torch_load_is_weights_only():
    """User data is never pickled; checkpoints load with weights_only=True only."""
    code = [LIB, LIB.parent / "flows", LIB.parent / "tasks"]
    loads, offenders = 0, []
    for path in (p for d in code for p in d.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                mods += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                offenders += [f"{path.name}: imports {m}" for m in mods if "pickle" in m]
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load":
                if getattr(node.func.value, "id", None) == "torch":
                    loads += 1
                    kw = {k.arg: k.value for k in node.keywords}
                    if not (isinstance(kw.get("weights_only"), ast.Constant)
                            and kw["weights_only"].value is True):  # fmt: skip
                        offenders.append(f"{path.name}:{node.lineno}: torch.load without it")
    assert loads >= 1 and offenders == []
