"""The ``cpp`` backend: fastgd's compiled C++ kernels (``fastgd._core``).

The extension checks every argument itself and never converts arrays; callers pass arrays that
already have the right dtype and layout (``fastgd.network`` converts once, before it calls in).
"""

from __future__ import annotations

import fastgd._core as _core  # (not `from .. import _core`: a missing module then says "No module named")

NAME = "cpp"

# forward, predict and cost raise fastgd.errors.DataError when a first-layer weighted input is NaN
# or infinite (found on the way, at no extra pass over X): callers may skip their own NaN check.
FINDS_NONFINITE_INPUT = True

forward = _core.forward
predict = _core.predict
cost = _core.cost
grad = _core.grad
train_epoch = _core.train_epoch
train_epoch_many = _core.train_epoch_many


def info() -> dict[str, object]:
    """How the extension was built and which instruction set it runs."""
    return dict(_core.build_info())
