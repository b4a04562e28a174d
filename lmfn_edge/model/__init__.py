"""The network (:mod:`.lmfn`, :mod:`.dsconv`), its deploy form (:mod:`.deploy`) and its weights
(:mod:`.weights`): everything about LMFN that does not depend on where it runs."""

from .lmfn import CELLS, LMFN, LMFNConfig, config_for, model_name

__all__ = ["CELLS", "LMFN", "LMFNConfig", "config_for", "model_name"]
