"""The paper's settings that several parts of flatarch use, each defined here once.

* DARTS' architecture optimizer (Liu et al. 2019, ``cnn/train_search.py``): Adam, lr 3e-4,
  betas (0.5, 0.999), weight decay 1e-3; the A2M paper keeps it (table 3).
* A2M's finite-difference step ``eps = 1e-2`` and the radius ``rho`` per search space:
  1e-2 on NAS-Bench-201, 1e-1 on the DARTS space (A2M paper, appendix C.3).
"""

from __future__ import annotations

from typing import Any

#: DARTS' architecture optimizer: Adam, lr 3e-4, betas (0.5, 0.999), weight decay 1e-3.
DARTS_ADAM_DEFAULTS: dict[str, Any] = {"lr": 3e-4, "betas": (0.5, 0.999), "weight_decay": 1e-3}

#: A2M's finite-difference step (paper appendix C.3), a fixed number, not divided by a norm.
EPS = 1e-2

#: the paper's rho per search space (appendix C.3; the grid searched was 1e-5 ... 1e-1)
RHO_BY_SPACE: dict[str, float] = {"nb201": 1e-2, "darts": 1e-1}

#: the default radius of SAM, USAM and A2M when no space is known
RHO = RHO_BY_SPACE["nb201"]
