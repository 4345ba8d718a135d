"""The layers hold: the core imports only the standard library, and nothing runs at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STDLIB = set(sys.stdlib_module_names)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
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


def test_importing_every_module_starts_no_thread_and_opens_no_socket():
    code = (
        "import importlib, pkgutil, threading, socket\n"
        "opened = []\n"
        "real = socket.socket.connect\n"
        "socket.socket.connect = lambda self, *a: opened.append(a) or real(self, *a)\n"
        "for pkg in ('alerts', 'sensors', 'config', 'service'):\n"
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
