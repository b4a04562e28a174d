"""The LMFN training recipe (ICASSP 2025), following LKDN's official BasicSR configs.

Modules: ``config`` (TrainConfig, TOML and ``--set`` overrides), ``data`` (paired and HR-only
folders, reproducible patches), ``engine`` (step, EMA, validation), ``checkpoint`` (exact
resume), ``dist`` (torchrun), ``train``, ``release`` and ``throughput`` (the CLIs). See
docs/training.md.
"""
