"""The package layout: imports run only downstream the pipeline, and old paths still work.

The stages, in data-flow order (``fisherlab/<stage>/`` or ``fisherlab/<stage>.py``):

    data -> models -> {training, fisher} -> attacks -> planner -> experiments -> plots -> loop
    -> cli

The ground files (``errors``, ``_io``, ``_version``, ``_device``) may be imported from
anywhere and import no other fisherlab module. The facade files
(``fisherlab/__init__.py``, ``__main__.py``, ``_compat.py``) re-export or
alias and are exempt. These rules are read from the source with ``ast``, so
the test does not depend on what happens to be imported at run time.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fisherlab"

STAGES = {
    "data": 1,
    "models": 2,
    "training": 3,
    "fisher": 3,
    "attacks": 4,
    "planner": 5,
    "experiments": 6,
    "plots": 7,
    "loop": 8,
    "cli": 9,
}
"""Stage -> its rank in the flow; an import may point to a lower rank (or its own stage)."""

GROUND = {"errors", "_io", "_version", "_device", "_progress"}
FACADE = {"__init__", "__main__", "_compat"}
NEVER_EACH_OTHER = {frozenset({"training", "fisher"})}

OPTIONAL_DEPENDENCIES = {"sklearn", "timm", "opacus", "ray"}
"""Packages that are not dependencies of fisherlab: the one documented exception to
"no imports inside functions" (importing them lazily keeps the base install working)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _stage(module: str) -> str:
    """``fisherlab.fisher.engine`` -> ``fisher``; ground and facade files by their name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(node: ast.ImportFrom, module: str, path: Path) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(imported fisherlab module, line, inside a function)`` for every import statement."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                target = _resolve(child, module, path)
                found.append((target, child.lineno, in_function))
                # ``from fisherlab.models import layers`` may name a submodule
                found.extend(
                    (f"{target}.{alias.name}", child.lineno, in_function)
                    for alias in child.names
                    if f"{target}.{alias.name}" in MODULES
                )
            visit(child, nested)

    visit(tree, False)
    return found


MODULES = _modules()


def _internal_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, _, in_function in _imports(module, path):
            if not in_function and target in MODULES and target != module:
                edges[module].add(target)
    return edges


def test_the_stages_cover_the_package():
    stages = {_stage(m) for m in MODULES}
    assert stages <= set(STAGES) | GROUND | FACADE, stages - set(STAGES) - GROUND - FACADE
    assert set(STAGES) <= stages


def test_imports_point_only_downstream():
    upstream = []
    for module, path in MODULES.items():
        own = _stage(module)
        if own in FACADE:
            continue
        for target, line, _ in _imports(module, path):
            if not target.startswith("fisherlab"):
                continue
            other = _stage(target)
            if other in GROUND:
                continue
            if other not in STAGES and other not in FACADE:
                upstream.append(f"{path.name}:{line} {module} -> {target} (an old path)")
                continue
            if own in GROUND or other in FACADE:
                upstream.append(f"{path.name}:{line} {module} -> {target}")
            elif frozenset({own, other}) in NEVER_EACH_OTHER:
                upstream.append(f"{path.name}:{line} {module} -> {target} (siblings)")
            elif STAGES[other] > STAGES[own] or (STAGES[other] == STAGES[own] and other != own):
                upstream.append(f"{path.name}:{line} {module} -> {target}")
    assert not upstream, "imports running back up the flow:\n" + "\n".join(upstream)


def test_no_import_circle():
    edges = _internal_edges()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            walk(module, [module])
    assert not cycles, cycles


def test_no_imports_inside_functions_outside_the_cli():
    inside = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for module, path in MODULES.items()
        if module != "fisherlab.cli"
        for target, line, in_function in _imports(module, path)
        if in_function and target.split(".")[0] not in OPTIONAL_DEPENDENCIES
    ]
    assert not inside, "\n".join(inside)


def test_computing_modules_never_draw():
    drawing = [
        f"{module} imports {target}"
        for module, path in MODULES.items()
        if _stage(module) not in {"plots", "loop", "cli"}  # loop and cli draw what they wrote
        for target, _, _ in _imports(module, path)
        if target.split(".")[0] in {"matplotlib", "seaborn"} or target == "fisherlab.plots"
    ]
    assert not drawing, drawing


def test_the_rules_catch_a_violation(tmp_path):
    """The checks above can fail: an upward import and a function-level import are seen."""
    bad = tmp_path / "fisherlab" / "data" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from fisherlab.attacks import attack\n\ndef f():\n    import fisherlab.plots\n")
    found = _imports("fisherlab.data.bad", bad)
    assert ("fisherlab.attacks", 1, False) in found
    assert ("fisherlab.plots", 4, True) in found
    assert STAGES[_stage("fisherlab.attacks")] > STAGES[_stage("fisherlab.data.bad")]


OLD_NAMES = {
    "fisherlab": ["profile", "train", "attack", "TrainConfig", "load_model", "reference_profile"],
    "fisherlab.fisher": ["profile", "FisherEngine", "FisherSums", "fisher_frame", "COLUMNS"],
    "fisherlab.models": ["available", "build_model", "replace_head", "swap_head", "ARCHITECTURES"],
    "fisherlab.checkpoint": ["load_model", "save_model", "model_meta", "ModelMeta", "fingerprint"],
    "fisherlab.layers": ["layers", "layer_map", "layer_state_keys", "resolve_layer_indices"],
    "fisherlab.defenses": ["DEFENSES", "VIBHead", "install_head", "MID", "hsic", "flag"],
    "fisherlab.train": ["TrainConfig", "train", "freeze", "TrainResult"],
    "fisherlab.evaluate": ["natural_accuracy", "iterate_batches", "knn_distances", "topk_correct"],
    "fisherlab.objectives": ["OBJECTIVES", "FisherType", "uniforms", "sample_labels"],
    "fisherlab.reference": ["reference_profile"],
    "fisherlab.engines.backpack_engine": ["FAST_PATHS", "PerSampleFisher", "fast_path_reason"],
    "fisherlab.engines.functorch_engine": ["functorch_pass"],
    "fisherlab.gan": ["Generator", "Critic", "KEDMIDiscriminator", "Z_DIM"],
    "fisherlab.train_gan": ["GANConfig", "train_gan", "load_gan", "save_samples", "GANPrior"],
    "fisherlab.attacks": ["ATTACKS", "SUMMARY_METRICS", "AttackConfig", "attack", "write_outputs"],
    "fisherlab.attacks.base": ["AttackConfig", "AttackResult", "FisherRecorder", "finish"],
    "fisherlab.reproduce": ["PRESETS", "ReproduceConfig", "reproduce"],
    "fisherlab.claims": ["verdict", "assess_claims", "pareto_front", "select_runs"],
    "fisherlab.planner": ["recommend_freeze", "read_profile", "layer_shares", "check_rule"],
    "fisherlab.data": ["DataSpec", "InputSpec", "load_dataset", "FORMS", "available"],
}


@pytest.mark.parametrize("module", sorted(OLD_NAMES))
def test_old_public_names_import_from_their_old_places(module):
    imported = importlib.import_module(module)
    missing = [name for name in OLD_NAMES[module] if not hasattr(imported, name)]
    assert not missing


def test_old_paths_are_the_new_modules_and_keep_the_functions():
    import fisherlab.layers
    import fisherlab.train

    import fisherlab
    import fisherlab.models.layers

    assert sys.modules["fisherlab.layers"] is sys.modules["fisherlab.models.layers"]
    assert callable(fisherlab.layers) and callable(fisherlab.train)
    assert fisherlab.checkpoint.load_model is fisherlab.models.checkpoint.load_model
