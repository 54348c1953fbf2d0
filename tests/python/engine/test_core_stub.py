"""himari/_core.pyi stays true to the native module: the same public names (functions, classes,
constants), and for every function, method and constructor the parameter names, kinds and
default values that pybind11 reports in the signature line of its ``__doc__``.

``stub_differences`` compares a stub's source with the imported module; the mutation tests show
that it notices a name added, a name missing, a renamed parameter, a changed default and a
writable attribute declared read-only.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import himari
from himari import _core

STUB = Path(himari.__file__).with_name("_core.pyi")

# Attributes pybind11 adds to every class and module that are not part of the API, and methods
# every object has (a stub need not repeat them; type checkers know them from ``object``).
PYBIND_INTERNALS = {"_pybind11_conduit_v1_"}
OBJECT_METHODS = set(dir(object)) - {"__init__"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "positional", "keyword", "*args", "**kwargs"
    default: Any  # NO_DEFAULT, a literal value, or UNKNOWN_DEFAULT (present, not a literal)


NO_DEFAULT = "<no default>"
UNKNOWN_DEFAULT = "<a default that is not a literal>"


def _params(args: ast.arguments, defaults_of: Any) -> list[Param]:
    out: list[Param] = []
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    for i, a in enumerate(positional):
        default = defaults_of(args.defaults[i - first_default]) if i >= first_default else NO_DEFAULT
        out.append(Param(a.arg, "positional", default))
    if args.vararg:
        out.append(Param(args.vararg.arg, "*args", NO_DEFAULT))
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        out.append(Param(a.arg, "keyword", NO_DEFAULT if d is None else defaults_of(d)))
    if args.kwarg:
        out.append(Param(args.kwarg.arg, "**kwargs", NO_DEFAULT))
    return out


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return UNKNOWN_DEFAULT


# ---- the native side ------------------------------------------------------------------------

def native_signatures(obj: Any, name: str) -> list[list[Param]]:
    """The signatures pybind11 documents for ``obj`` (one per overload)."""
    doc = obj.__doc__ or ""
    lines = doc.splitlines()
    if len(lines) > 1 and lines[1].strip() == "Overloaded function.":
        heads = [re.sub(r"^\d+\. ", "", ln) for ln in lines if re.match(rf"^\d+\. {re.escape(name)}\(", ln)]
    else:
        heads = lines[:1]
    sigs = []
    for head in heads:
        m = re.match(rf"^{re.escape(name)}\((.*)\) -> .*$", head)
        assert m, f"{name}: no pybind11 signature in its __doc__: {doc!r}"
        try:
            tree = ast.parse(f"def f({m.group(1)}): pass")
        except SyntaxError as exc:  # a raw C++ type or default leaked into the signature
            raise AssertionError(f"{name}: pybind11 signature is not Python: {head!r}") from exc
        fn = tree.body[0]
        assert isinstance(fn, ast.FunctionDef)
        sigs.append(_params(fn.args, _literal))
    return sigs


def _is_api_member(name: str) -> bool:
    """Public names and special methods, less pybind11's internals and ``object``'s methods."""
    if name in PYBIND_INTERNALS or name in OBJECT_METHODS:
        return False
    return not name.startswith("_") or name.endswith("__")


def is_constructor(cls: type) -> bool:
    """pybind11 gives a class without py::init an ``__init__`` that only raises."""
    init = cls.__dict__.get("__init__")
    return init is not None and (init.__doc__ or "").startswith("__init__(")


def native_class(cls: type) -> dict[str, Any]:
    """Members: name -> ("property", writable) or ("method", signatures)."""
    members: dict[str, Any] = {}
    for name, value in cls.__dict__.items():
        if not _is_api_member(name):
            continue
        if isinstance(value, property):
            members[name] = ("property", value.fset is not None)
        elif name == "__init__":
            if is_constructor(cls):
                members[name] = ("method", native_signatures(value, name))
        elif callable(value) and name not in ("__doc__", "__module__"):
            members[name] = ("method", native_signatures(value, name))
    return members


def native_module(module: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"function": {}, "class": {}, "constant": {}}
    for name in dir(module):
        if name.startswith("_"):
            continue
        value = getattr(module, name)
        if isinstance(value, type):  # classes and exception types alike
            out["class"][name] = native_class(value)
        elif callable(value):
            out["function"][name] = native_signatures(value, name)
        else:
            out["constant"][name] = value
    return out


# ---- the stub side --------------------------------------------------------------------------

def _decorators(fn: ast.FunctionDef) -> list[str]:
    return [ast.unparse(d) for d in fn.decorator_list]


def stub_class(node: ast.ClassDef) -> dict[str, Any]:
    members: dict[str, Any] = {}
    overloads: dict[str, list[list[Param]]] = {}
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            members[item.target.id] = ("property", True)  # a plain attribute reads and writes
        elif isinstance(item, ast.FunctionDef):
            decorators = _decorators(item)
            if "property" in decorators:
                members[item.name] = ("property", False)
            elif any(d.endswith(".setter") for d in decorators):
                members[item.name] = ("property", True)
            else:
                overloads.setdefault(item.name, []).append(_params(item.args, _literal))
    for name, sigs in overloads.items():
        members[name] = ("method", sigs)
    return {k: v for k, v in members.items() if _is_api_member(k)}


def stub_module(source: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"function": {}, "class": {}, "constant": {}}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            out["function"].setdefault(node.name, []).append(_params(node.args, _literal))
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            out["class"][node.name] = stub_class(node)
        elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
              and not node.target.id.startswith("_")):
            out["constant"][node.target.id] = node.annotation
    return out


# ---- the comparison -------------------------------------------------------------------------

def _type_matches(value: Any, annotation: ast.expr) -> bool:
    """``int``, ``str``, ``list[str]``, ``tuple[str, ...]``: the outer type and element type."""
    builtins = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple}
    if isinstance(annotation, ast.Name):
        return type(value) is builtins.get(annotation.id)
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        outer = builtins.get(annotation.value.id)
        inner = annotation.slice.elts[0] if isinstance(annotation.slice, ast.Tuple) else annotation.slice
        element = builtins.get(inner.id) if isinstance(inner, ast.Name) else None
        return type(value) is outer and element is not None and all(type(v) is element for v in value)
    return False


def _compare_sigs(where: str, native: list[list[Param]], stub: list[list[Param]]) -> list[str]:
    if native != stub:
        return [f"{where}: stub signature {stub} != pybind11's {native}"]
    return []


def stub_differences(source: str, module: Any) -> list[str]:
    native, stub = native_module(module), stub_module(source)
    problems: list[str] = []
    for kind, plural in (("function", "functions"), ("class", "classes"), ("constant", "constants")):
        missing = sorted(set(native[kind]) - set(stub[kind]))
        extra = sorted(set(stub[kind]) - set(native[kind]))
        if missing:
            problems.append(f"{plural} the stub lacks: {missing}")
        if extra:
            problems.append(f"{plural} the module lacks: {extra}")
    for name in sorted(set(native["function"]) & set(stub["function"])):
        problems += _compare_sigs(name, native["function"][name], stub["function"][name])
    for cls in sorted(set(native["class"]) & set(stub["class"])):
        n, s = native["class"][cls], stub["class"][cls]
        if set(n) != set(s):
            problems.append(f"{cls}: members the stub lacks {sorted(set(n) - set(s))}, "
                            f"members the class lacks {sorted(set(s) - set(n))}")
        for member in sorted(set(n) & set(s)):
            where = f"{cls}.{member}"
            if n[member][0] != s[member][0]:
                problems.append(f"{where}: a {n[member][0]} in the module, a {s[member][0]} in the stub")
            elif n[member][0] == "property" and n[member][1] != s[member][1]:
                problems.append(f"{where}: writable={n[member][1]} in the module, {s[member][1]} in the stub")
            elif n[member][0] == "method":
                problems += _compare_sigs(where, n[member][1], s[member][1])
    for name in sorted(set(native["constant"]) & set(stub["constant"])):
        value, annotation = native["constant"][name], stub["constant"][name]
        if not _type_matches(value, annotation):
            problems.append(f"{name}: {value!r} is not a {ast.unparse(annotation)}")
    return problems


# ---- tests ----------------------------------------------------------------------------------

def test_stub_sits_beside_the_module() -> None:
    """Type checkers look for himari/_core.pyi next to the extension."""
    assert STUB.is_file()
    assert Path(_core.__file__).parent == STUB.parent


def test_stub_matches_the_module() -> None:
    problems = stub_differences(STUB.read_text(), _core)
    assert not problems, "himari/_core.pyi is out of step with himari._core:\n" + "\n".join(problems)


def test_every_native_callable_documents_a_python_signature() -> None:
    """Guards the comparison itself: each function and method was found and parsed."""
    native = native_module(_core)
    assert {"backtest_signals", "ekf_cuda", "counter_hash"} <= set(native["function"])
    assert native["function"]["backtest_signals"][0][-2:] == [Param("device", "positional", "cpu"),
                                                              Param("threads", "positional", 1)]
    env = native["class"]["TradingEnv"]
    self_, actions = Param("self", "positional", NO_DEFAULT), Param("actions", "positional", NO_DEFAULT)
    assert env["step"] == ("method", [[self_, actions]])
    assert env["obs"] == ("property", False)
    assert native["class"]["RewardConfig"]["dsr_decay"] == ("property", True)
    assert "__init__" not in native["class"]["DeviceArray"]  # not constructible from Python
    assert native["constant"]["ACCOUNT_COLUMNS"] == 4


def _mutate(source: str, old: str, new: str) -> str:
    assert source.count(old) == 1, old
    return source.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("def cuda_compiled() -> bool:", "def cuda_compiled_() -> bool:",
         "functions the stub lacks: ['cuda_compiled']"),
        ("def build_summary() -> str:", "def build_summary() -> str: ...\ndef not_in_module() -> str:",
         "functions the module lacks: ['not_in_module']"),
        ("ACTION_DTYPES: tuple[str, ...]\n", "", "constants the stub lacks: ['ACTION_DTYPES']"),
        ("ACTION_DTYPES: tuple[str, ...]\n", "ACTION_DTYPES: list[str]\n", "ACTION_DTYPES: ("),
        ("class DeviceMarket:", "class DeviceMarket_:", "classes the stub lacks: ['DeviceMarket']"),
        ("def counter_hash(seed: int, stream: int, counter: int)",
         "def counter_hash(seed: int, stream_id: int, counter: int)", "counter_hash: stub signature"),
        ('    threads: int = 1,\n) -> tuple[NDArray[numpy.float64], NDArray[numpy.float64] | None]:',
         '    threads: int = 0,\n) -> tuple[NDArray[numpy.float64], NDArray[numpy.float64] | None]:',
         "backtest_signals: stub signature"),
        ("    def check(self, stream: int = 0) -> None:", "    def check(self, stream: int) -> None:",
         "CudaTradingEnv.check: stub signature"),
        ("    dsr_decay: float\n", "    @property\n    def dsr_decay(self) -> float: ...\n",
         "RewardConfig.dsr_decay: writable=True in the module, False in the stub"),
        ("    def numpy(self) -> NDArray[Any]:", "    def numpy_copy(self) -> NDArray[Any]:",
         "DeviceArray: members the stub lacks ['numpy'], members the class lacks ['numpy_copy']"),
    ],
)
def test_a_drifted_stub_is_caught(old: str, new: str, expected: str) -> None:
    problems = stub_differences(_mutate(STUB.read_text(), old, new), _core)
    assert any(expected in p for p in problems), problems
