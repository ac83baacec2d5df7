"""Inference backends behind one small interface (:class:`Backend`)."""

from __future__ import annotations

from ..settings import Settings
from .base import Backend

__all__ = ["Backend", "create_backend"]


def create_backend(settings: Settings) -> Backend:
    """The backend named by ``settings.backend``; optional ones are imported only when chosen."""
    if settings.backend == "transformers":
        from .transformers_backend import TransformersBackend

        return TransformersBackend(settings)
    if settings.backend == "llama_cpp":
        from .llama_cpp_backend import LlamaCppBackend

        return LlamaCppBackend(settings)
    if settings.backend == "openai":
        from .openai_backend import OpenAIBackend

        return OpenAIBackend(settings)
    if settings.backend == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend(settings)
    raise ValueError(f"unknown backend {settings.backend!r}")
