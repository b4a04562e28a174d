"""Int8 quantization of LMFN for XNNPACK: QAT fine-tuning (:mod:`quantization.qat`) and the PTQ
baseline (:mod:`quantization.ptq`), both PT2E (torchao) on the deploy form, handing a quantized
program (.pt2) to ``python -m lmfn_edge.export --precision int8``. See docs/quantization.md.
"""

import lmfn_edge  # noqa: F401  (first: arms Ctrl-C handling while the command's imports run)
