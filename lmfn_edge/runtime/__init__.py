"""Running exported programs and the eager model over whole images: backends (:mod:`.backends`),
tiling (:mod:`.tiling`, mirrored by the Android app) and the :class:`Upscaler` around them.
Never imports the exporter: a runtime reads artifacts only through their sidecar contract."""

from .backends import (
    Backend,
    BackendError,
    coreml_backend,
    eager_backend,
    load_backend,
    pte_backend,
)
from .upscaler import Upscaler

__all__ = ["Backend", "BackendError", "Upscaler", "coreml_backend", "eager_backend", "load_backend", "pte_backend"]
