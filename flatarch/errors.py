"""Exceptions raised by flatarch's architecture updates."""


class NonFiniteError(FloatingPointError):
    """A loss or gradient evaluated during an architecture step was NaN or infinite.

    Raised before anything is changed: the parameters, their ``.grad`` and the inner
    optimizer's state are exactly as they were. Pass ``on_nonfinite="skip"`` to skip such
    steps instead (they are counted in ``skipped_steps``).
    """
