"""Measuring runtimes: image quality on benchmark folders (:mod:`.quality`, the BasicSR protocol)
and latency and memory side by side (:mod:`.latency`)."""

from .quality import (
    EvalError,
    EvalImage,
    Method,
    Report,
    evaluate,
    load_dataset,
    parse_methods,
)

__all__ = ["EvalError", "EvalImage", "Method", "Report", "evaluate", "load_dataset", "parse_methods"]
