"""The house holds: imports go only downwards, at the top and never by name; rooms stay small.

Layers, lowest first: ``alerts`` (the pure core) < ``sensors``, ``config`` < ``service`` <
``service.http`` and ``service.web`` (the HTTP side). ``service/bootstrap.py`` is the composition
root: the one module allowed to reach up and build the HTTP app. ``sinks`` (test stand-ins) is used
by the tests and ``ews bench`` only. An allow-list entry names a room still too big, with the reason;
it must go once the room is split (the test says so).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

from alerts.errors import EwsError

ROOT = Path(__file__).resolve().parents[2]
STDLIB = set(sys.stdlib_module_names)
PRODUCT = ("alerts", "sensors", "config", "service", "sinks")
MAX_FUNCTION_LINES = 60
MAX_FILE_LINES = 400

# The composition root builds every adapter, the HTTP app included.
REACHES_UP = {"service.bootstrap": "the composition root: it builds the HTTP app and server"}
# Rooms still too big, and why (issue 14: "house-rooms" splits them; remove an entry when done).
BIG_FILES = {
    "service/db/schema.py": "declarative table definitions: the whole schema in one place, read as one",
}
LONG_FUNCTIONS: dict[str, str] = {}
# A private name used by another module (it should be public, in a module both may use).
REACHES_PRIVATE: dict[str, str] = {}
# Catching ModuleNotFoundError only to say, in one line, what is missing (never to carry on without it).
SAYS_WHAT_IS_MISSING = {"service/bench/common.py": "the Docker image leaves the test sinks out"}
# A module of ours imported inside a function, and why it cannot be imported at the top.
IMPORTS_INSIDE = {
    "service/bench/common.py:twilio_sink": "the Docker image leaves the test sinks out (SAYS_WHAT_IS_MISSING)",
    "service/http/__init__.py:_blueprints": "the route modules import ``services`` from this package",
}
# Errors that are not ours to root: the HTTP layer's answer itself.
OWN_ROOT_EXEMPT = {"service.http.errors.Problem": "the HTTP answer our errors are translated into"}


def product_files():
    """Every product module's path (migrations are history: never rewritten, never checked)."""
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    """0 core, 1 wire and settings, 2 the shell, 3 its HTTP side; None for what is not ours."""
    top = module.split(".")[0]
    if top == "alerts":
        return 0
    if top in ("sensors", "config"):
        return 1
    if module.split(".")[:2] in (["service", "http"], ["service", "web"]):
        return 3
    return 2 if top == "service" else None


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def full_imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it; ``from a import b`` counts as ``a`` and ``a.b``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_core_imports_only_the_standard_library():
    offenders = {}
    for path in sorted((ROOT / "alerts").rglob("*.py")):
        foreign = imported_modules(path) - STDLIB - {"alerts", "__future__"}
        if foreign:
            offenders[str(path.relative_to(ROOT))] = sorted(foreign)
    assert offenders == {}


def test_the_core_and_the_wire_format_never_import_the_shell():
    for package in ("alerts", "sensors", "config"):
        for path in (ROOT / package).rglob("*.py"):
            assert "service" not in imported_modules(path), path


def test_no_module_imports_a_higher_layer():
    offenders = []
    for path in product_files():
        me = module_name(path)
        if me in REACHES_UP or layer(me) is None:
            continue
        offenders += [f"{me} -> {name}" for name in sorted(full_imports(path))
                      if layer(name) is not None and layer(name) > layer(me)]
    assert offenders == []


def test_only_the_tests_and_the_bench_use_the_test_sinks():
    users = [module_name(path) for path in product_files()
             if any(name.split(".")[0] == "sinks" for name in full_imports(path))]
    assert [user for user in users if not user.startswith(("service.bench", "sinks"))] == []


def test_no_module_of_ours_is_imported_by_name():
    offenders = []
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                called = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if called in ("import_module", "__import__"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        relative = str(path.relative_to(ROOT))
        if "except ModuleNotFoundError" in path.read_text(encoding="utf-8") and relative not in SAYS_WHAT_IS_MISSING:
            offenders.append(f"{relative}: catches ModuleNotFoundError")
    assert offenders == []


def test_modules_of_ours_are_imported_at_the_top():
    """An import inside a function hides a dependency (and a circle) from the reader and from these tests."""
    found = set()
    for path in product_files():
        for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.update(f"{path.relative_to(ROOT)}:{function.name}" for node in ast.walk(function)
                             if _imports_ours(node))
    assert sorted(found - set(IMPORTS_INSIDE)) == [], "import it at the top of the module"
    assert sorted(set(IMPORTS_INSIDE) - found) == [], "gone: remove it from IMPORTS_INSIDE"


def _imports_ours(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in PRODUCT
    return isinstance(node, ast.Import) and any(alias.name.split(".")[0] in PRODUCT for alias in node.names)


def _our_names(tree: ast.AST) -> tuple[set[str], list[tuple[int, str]]]:
    """The names a module binds to our modules (or their members), and the private names it imports from them."""
    names, private = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] in PRODUCT:
            names.update(alias.asname or alias.name for alias in node.names)
            private += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                        if alias.name.startswith("_")]
        elif isinstance(node, ast.Import):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names
                         if alias.name.split(".")[0] in PRODUCT)
    return names, private


def test_no_module_reaches_into_a_private_name_of_another():
    offenders = []
    for path in product_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        ours, private = _our_names(tree)
        reached = private + [(node.lineno, f"{node.value.id}.{node.attr}") for node in ast.walk(tree)
                             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                             and node.value.id in ours and node.attr.startswith("_") and not node.attr.startswith("__")]
        offenders += [f"{module_name(path)} -> {name}" for _, name in reached]
    assert sorted(set(offenders) - set(REACHES_PRIVATE)) == [], "give it a public name, in a module both may use"
    assert sorted(set(REACHES_PRIVATE) - set(offenders)) == [], "gone: remove it from REACHES_PRIVATE"


def test_no_module_of_ours_is_asked_for_a_name_it_may_lack():
    """``getattr(module, name, default)`` on our own module hides a missing part: import it plainly."""
    offenders = []
    for path in product_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        ours, _ = _our_names(tree)
        offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "hasattr")
                      and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in ours]
    assert offenders == []


def test_where_the_databases_differ_is_said_only_in_service_db():
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in product_files() if "db" not in path.parts[-2:-1]
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if "dialect.name ==" in line or "dialect.name !=" in line]
    assert offenders == [], "use service/db/dialect.py"


def _long_functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                yield f"{path.relative_to(ROOT)}:{node.name}", length


def test_no_function_is_over_60_lines():
    found = dict(found for path in product_files() for found in _long_functions(path))
    assert {key: lines for key, lines in found.items() if key not in LONG_FUNCTIONS} == {}
    assert sorted(set(LONG_FUNCTIONS) - set(found)) == [], "now short enough: remove it from LONG_FUNCTIONS"


def test_no_file_is_over_400_lines():
    found = {str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
             for path in product_files()}
    big = {name: lines for name, lines in found.items() if lines > MAX_FILE_LINES}
    assert {name: lines for name, lines in big.items() if name not in BIG_FILES} == {}
    assert sorted(set(BIG_FILES) - set(big)) == [], "now small enough: remove it from BIG_FILES"


def test_every_error_we_raise_is_in_the_one_tree():
    strays = []
    for package in ("alerts", "sensors", "config", "service", "sinks"):
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
            if ".migrations" in info.name or info.name.endswith(".regen"):
                continue
            module = importlib.import_module(info.name)
            for name, cls in inspect.getmembers(module, inspect.isclass):
                qualified = f"{cls.__module__}.{cls.__qualname__}"
                if (cls.__module__ == info.name and issubclass(cls, BaseException)
                        and not issubclass(cls, EwsError) and qualified not in OWN_ROOT_EXEMPT):
                    strays.append(qualified)
    assert strays == [], "derive them from alerts.errors (and list them in its tree)"


def test_importing_every_module_starts_no_thread_and_opens_no_socket():
    code = (
        "import importlib, pkgutil, threading, socket\n"
        "opened = []\n"
        "real = socket.socket.connect\n"
        "socket.socket.connect = lambda self, *a: opened.append(a) or real(self, *a)\n"
        "for pkg in ('alerts', 'sensors', 'config', 'service', 'sinks'):\n"
        "    mod = importlib.import_module(pkg)\n"
        "    for info in pkgutil.walk_packages(mod.__path__, pkg + '.'):\n"
        "        if '.migrations' in info.name or info.name.endswith('.regen'):\n"
        "            continue\n"
        "        importlib.import_module(info.name)\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert not opened, opened\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
