"""Exceptions raised by flatarch's architecture updates."""


class NonFiniteError(FloatingPointError):
    """A loss or gradient evaluated during an architecture step was NaN or infinite.

    Raised before anything is changed: the parameters, their ``.grad`` and the inner
    optimizer's state are exactly as they were. Pass ``on_nonfinite="skip"`` to skip such
    steps instead (they are counted in ``skipped_steps``).
    """


class StateDictError(ValueError):
    """A state_dict does not belong to this update: another update kind, other parameter names
    or shapes, or other settings (rho, eps, ...). Raised before anything is loaded."""
