"""Shared fixtures."""

import pytest
import torch


def _one_thread():
    # Two intra-op threads on a shared 2-core machine spin-wait on each other and run up to 20x
    # slower; training tests also need one thread count throughout for bit-exact resume checks.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


one_thread = pytest.fixture(_one_thread, name="one_thread")
# For module-scoped fixtures that train (their runs and the tests' runs must share a thread count).
one_thread_module = pytest.fixture(_one_thread, scope="module", name="one_thread_module")
