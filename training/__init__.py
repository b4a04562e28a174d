"""The LMFN training recipe (ICASSP 2025), following LKDN's official BasicSR configs.

Modules: ``config`` (TrainConfig over the engine's LoopConfig, TOML and ``--set`` overrides),
``data`` (paired and HR-only folders, reproducible patches), ``engine`` (step, EMA, validation),
``loop`` (the training engine that ``quantization.qat`` reuses: loop, checkpoints, exact resume,
run log), ``checkpoint``, ``dist`` (torchrun), ``train``, ``release`` and ``throughput`` (the
CLIs). See docs/training.md.
"""

import lmfn_edge  # noqa: F401  (first: arms Ctrl-C handling while the command's imports run)
