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


#: Layers of alseg_core, bottom up: a module may import its own layer and those below.
LAYERS = [
    {"types", "faults", "storage", "workspace", "progress", "executors", "content", "params_lines"},
    {"datasets", "labels", "superpixels", "models", "metrics", "plots", "training_spec"},
    {"inference", "training", "evaluation", "distributed"},
    {"active"},
    {"annotation"},
    {"config"},
    {"pipeline"},
    {"cli"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _part(path: Path) -> str:
    """The top-level part of alseg_core a file belongs to (``active``, ``storage`` ...)."""
    rel = path.relative_to(LIB)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _alseg_imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "alseg_core" and len(parts) > 1 and parts[1] in LAYER_OF:
                found.append((node.lineno, parts[1]))
    return found


def test_every_library_part_has_a_layer():
    parts = {_part(p) for p in LIB.rglob("*.py")} - {"__init__"}
    assert parts <= set(LAYER_OF), parts - set(LAYER_OF)


def test_no_module_imports_upward():
    offenders = []
    for path in LIB.rglob("*.py"):
        if path == LIB / "__init__.py":
            continue  # the package's lazy exports name modules as strings only
        mine = LAYER_OF[_part(path)]
        for line, target in _alseg_imports(path):
            if LAYER_OF[target] > mine:
                offenders.append(f"{path.relative_to(LIB)}:{line} imports {target}")
    assert offenders == []


def test_the_cli_imports_the_pipeline_which_never_imports_it():
    cli = {t for p in (LIB / "cli").rglob("*.py") for _, t in _alseg_imports(p)}
    assert "pipeline" in cli
    pipeline = {t for p in (LIB / "pipeline").rglob("*.py") for _, t in _alseg_imports(p)}
    assert "cli" not in pipeline


def test_no_library_file_over_400_lines():
    long = {str(p.relative_to(LIB)): n for p in LIB.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400}  # fmt: skip
    assert long == {}


def test_dvc_yaml_is_generated_from_the_round_layout():
    from alseg_core.pipeline.dvcfile import render

    committed = (LIB.parent / "dvc.yaml").read_text()
    assert committed == render(), "dvc.yaml is stale: python -m alseg_core.pipeline.dvcfile"
