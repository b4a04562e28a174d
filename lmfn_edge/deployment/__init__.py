"""From a trained LMFN to artifacts a phone runs: export and lowering (:mod:`.exporter`,
:mod:`.lowering`), the int8 program file (:mod:`.quantized`), the Core ML numeric check
(:mod:`.coreml_eval`, :mod:`.coreml_verify`) and the Android install (:mod:`.android`).

ExecuTorch, coremltools and torchao are imported inside the functions that need them.
"""

from .android import install_android
from .exporter import (
    ExportRequest,
    ExportResult,
    VerificationFailed,
    export,
    export_program,
    export_quantized,
)
from .lowering import ExportError
from .quantized import (
    QuantizedInfo,
    QuantizedProgramError,
    load_quantized,
    save_quantized,
)

__all__ = [
    "ExportError",
    "ExportRequest",
    "ExportResult",
    "QuantizedInfo",
    "QuantizedProgramError",
    "VerificationFailed",
    "export",
    "export_program",
    "export_quantized",
    "install_android",
    "load_quantized",
    "save_quantized",
]
