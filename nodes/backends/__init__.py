"""Backends by name, imported lazily: `import nodes.backends` pulls in neither torch nor
llama_cpp; `create_backend("transformers")` does."""

from __future__ import annotations

import importlib
from typing import Callable

from nodes.backends.base import (Backend, BackendOptions, Generation, GenerationParams,
                                 InvalidParameter, ModelLoadError, Timings, Token)
from scheduler.registry import Registry

BACKENDS: Registry[Callable[[], type[Backend]]] = Registry("backend")


def _lazy(module: str, cls: str) -> Callable[[], type[Backend]]:
    return lambda: getattr(importlib.import_module(module), cls)


BACKENDS.register("llama-cpp")(_lazy("nodes.backends.llama_cpp_backend", "LlamaCppBackend"))
BACKENDS.register("transformers")(
    _lazy("nodes.backends.transformers_backend", "TransformersBackend"))


def create_backend(name: str, options: BackendOptions = BackendOptions()) -> Backend:
    """An unloaded backend of that name; KeyError names the accepted ones."""
    return BACKENDS.get(name)()(options)


__all__ = ["BACKENDS", "Backend", "BackendOptions", "Generation", "GenerationParams",
           "InvalidParameter", "ModelLoadError", "Timings", "Token", "create_backend"]
