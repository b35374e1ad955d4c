"""User code by name: algorithm modules to register (``--import``) and ``module:function`` controllers."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from offrl.errors import OffrlError


def import_plugin(spec: str) -> ModuleType:
    """Import a module by dotted name, or a Python file by path (registering what it defines)."""
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise OffrlError(f"{spec}: no such Python file")
        name = f"offrl_plugin_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return sys.modules[name]
        loader_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception:
            del sys.modules[name]
            raise
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as error:
        raise OffrlError(f"cannot import {spec!r}: {error}") from None


def recorded_import(spec: str) -> str:
    """``spec`` as a run records it: a Python file by its absolute path (the run may be resumed, evaluated or
    collected from elsewhere), a module name as it is."""
    return str(Path(spec).resolve()) if spec.endswith(".py") and Path(spec).is_file() else spec


def run_imports(path: str | Path) -> list[str]:
    """The ``--import`` modules recorded by the run that ``path`` is (or is inside: ``RUN/best``, a checkpoint)."""
    from offrl.train.run import run_settings

    return list(run_settings(path).get("cli", {}).get("imports", []))


def resolve_callable(spec: str) -> Callable:
    """``package.module:function`` or ``path/to/file.py:function``."""
    module_spec, sep, attribute = spec.rpartition(":")
    if not sep or not module_spec or not attribute:
        raise OffrlError(f"{spec!r}: expected module:function (or path/to/file.py:function)")
    module = import_plugin(module_spec)
    try:
        target = getattr(module, attribute)
    except AttributeError:
        raise OffrlError(f"{module_spec} has no attribute {attribute!r}") from None
    if not callable(target):
        raise OffrlError(f"{spec} is not callable")
    return target
