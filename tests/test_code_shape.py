"""The shape the house keeps (issue 23): short functions, and no wide dict handed across a package
boundary (a typed record says what it holds; a dict of many keys is a contract nobody can read)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(REPO / "tasks").rglob("*.py"), *(REPO / "dags").glob("*.py"), *(REPO / "models").rglob("*.py")])
MAX_FUNCTION_LINES = 60
MAX_RETURNED_KEYS = 8
# A dict that is a format, not a contract between our modules: Keras' get_config() is its serialisation
# protocol. A model's metadata (artifact.ModelMetadata), a registered model (tasks/registry/reads.py
# ModelRecord), an evaluation (tasks/evaluate/result.py EvaluationResult), a hashtag refresh
# (tasks/hashtags/refresh.py RefreshSummary) and a run page's summary (report.PageSummary) are typed records.
WIDE_DICTS_ALLOWED = {("tasks/train/optimizers.py", "get_config")}


def _functions():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(REPO).as_posix(), node


MAX_MODULE_LINES = 400


def test_no_module_of_the_pipeline_is_longer_than_400_lines():
    long = [f"{path.relative_to(REPO).as_posix()} ({lines} lines)" for path in (REPO / "tasks").rglob("*.py")
            if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES]
    assert long == []


def test_no_function_is_longer_than_60_lines():
    long = [f"{path}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path, node in _functions() if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == []


def _local_dict_keys(function: ast.AST) -> dict[str, set]:
    """Keys of the dicts a function builds in a local name: `name = {...}` or `dict(k=...)`, then
    `name["key"] = ...` (constant keys): a dict returned by name is as wide as all of them."""
    keys: dict[str, set] = {}
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
            if isinstance(target, ast.Name) and _literal_keys(value, keys) is not None:
                keys.setdefault(target.id, set()).update(_literal_keys(value, keys))
            elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name) \
                    and target.value.id in keys and isinstance(target.slice, ast.Constant):
                keys[target.value.id].add(target.slice.value)
    return keys


def _literal_keys(value: ast.AST, local: dict[str, set]) -> set | None:
    """The keys a dict expression holds, where the code says them (None: not a dict expression)."""
    if isinstance(value, ast.Dict):
        named = {key.value if isinstance(key, ast.Constant) else ast.dump(key) for key in value.keys if key}
        merged = [local.get(part.id, set()) for key, part in zip(value.keys, value.values)
                  if key is None and isinstance(part, ast.Name)]
        return named.union(*merged)
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict":
        base = [local.get(arg.id, set()) for arg in value.args if isinstance(arg, ast.Name)]
        unknown = [f"arg{index}" for index, arg in enumerate(value.args) if not isinstance(arg, ast.Name)]
        return {keyword.arg for keyword in value.keywords}.union(*base, unknown)
    if isinstance(value, ast.Name) and value.id in local:
        return local[value.id]
    return None


def _returned_keys(node: ast.Return, local: dict[str, set] | None = None) -> int:
    """How many keys the dict a `return` hands back holds (0: not a dict the code spells out)."""
    return len(_literal_keys(node.value, local or {}) or ()) if node.value is not None else 0


def test_no_public_function_returns_a_dict_literal_of_more_than_8_keys():
    wide = sorted(f"{path}:{node.lineno} {function.name} ({_returned_keys(node, local)} keys)"
                  for path, function in _functions() if not function.name.startswith("_")
                  and (path, function.name) not in WIDE_DICTS_ALLOWED
                  for local in [_local_dict_keys(function)] for node in ast.walk(function)
                  if isinstance(node, ast.Return) and _returned_keys(node, local) > MAX_RETURNED_KEYS)
    assert wide == []


def _merged(node: ast.Return) -> bool:
    """A dict built by merging another (`{**other, ...}`, `dict(other, ...)`): its width is not in the code."""
    value = node.value
    if isinstance(value, ast.Dict):
        return any(key is None for key in value.keys)
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "dict" \
        and bool(value.args)


def test_the_service_layer_returns_no_merged_dict():
    """What the front ends (CLI, DAGs) get from tasks/pipeline is a typed record or a dict whose keys are in
    the code: a merge hid 9 to 15 keys there before (a model's summary, a night's totals, an evaluation)."""
    merged = sorted(f"{path}:{node.lineno} {function.name}" for path, function in _functions()
                    if path.startswith("tasks/pipeline/") and not function.name.startswith("_")
                    for node in ast.walk(function) if isinstance(node, ast.Return) and _merged(node))
    assert merged == []


def test_the_checks_see_a_violation():
    """The two checks above find what they look for (a check that finds nothing proves nothing)."""
    source = "def wide():\n    return {" + ", ".join(f"'k{i}': {i}" for i in range(9)) + "}\n" \
             + "def long():\n" + "    x = 1\n" * 61
    functions = {node.name: node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)}
    (returned,) = [node for node in ast.walk(functions["wide"]) if isinstance(node, ast.Return)]
    assert _returned_keys(returned) == 9
    # a dict built in a local name, widened by item and by merge, then returned by name (hashtags.refresh
    # returned 9 keys that way past the literal-only check)
    built = ast.parse("def f():\n    s = {'a': 1, 'b': 2}\n    s['c'] = 3\n    t = dict(s, d=4)\n    return t\n"
                      "def g():\n    s = {'a': 1}\n    return {**s, 'b': 2}\n")
    for name, width in (("f", 4), ("g", 2)):
        (function,) = [node for node in ast.walk(built) if isinstance(node, ast.FunctionDef) and node.name == name]
        (returned,) = [node for node in ast.walk(function) if isinstance(node, ast.Return)]
        assert _returned_keys(returned, _local_dict_keys(function)) == width
    merges = [node for node in ast.walk(ast.parse("def a(x):\n    return {**x, 'k': 1}\ndef b(x):\n    return dict(x, k=1)\n"
                                                  "def c():\n    return dict(k=1)\n")) if isinstance(node, ast.Return)]
    assert [_merged(node) for node in merges] == [True, True, False]
    assert functions["long"].end_lineno - functions["long"].lineno + 1 == 62
