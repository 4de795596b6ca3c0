"""Backends by name, imported lazily: `import nodes.backends` pulls in neither torch nor
llama_cpp; `create_backend("transformers")` does. `backend_class(name)` imports only the
backend's own module, which imports its library when a model loads, so the class attributes
(what a backend can do, what `--model` must be) are read without the library."""

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
DEFAULT_BACKEND = "llama-cpp"  # GGUF on CPU threads: runs wherever the testbed does


def backend_class(name: str) -> type[Backend]:
    """The backend class of that name (its library not yet imported); KeyError names the
    accepted ones."""
    return BACKENDS.get(name)()


def create_backend(name: str, options: BackendOptions = BackendOptions()) -> Backend:
    """An unloaded backend of that name; KeyError names the accepted ones."""
    return backend_class(name)(options)


def describe_models() -> str:
    """What `--model` must be for each backend, e.g. 'GGUF file (llama-cpp) or ...'."""
    return " or ".join(f"{backend_class(name).model_kind} ({name})"
                       for name in BACKENDS.names())


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Backend", "BackendOptions", "Generation",
           "GenerationParams", "InvalidParameter", "ModelLoadError", "Timings", "Token",
           "backend_class", "create_backend", "describe_models"]
