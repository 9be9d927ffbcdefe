"""The one root of the errors a user can fix by changing a command or a file.

The command line prints such an error's message on one line and exits with status 2; the
message names what is wrong and what to do. Nothing on disk has changed when one is raised
before a run starts (bad settings, a folder in the way, a damaged checkpoint).
"""

from flatarch.errors import NonFiniteError


class UsageError(ValueError):
    """Bad input: settings, files or folders the user can fix; the message says how."""


class CheckpointError(UsageError):
    """A checkpoint cannot be read, or belongs to a run with other settings."""


class RunFolderError(UsageError):
    """An output folder cannot be used as asked (a file in the way, not writable, another run)."""


class DivergedError(UsageError):
    """The weights became NaN or infinite; the last good checkpoint is kept, nothing is saved."""


#: what a run that diverged raises: NaN/Inf weights or losses, or a NaN/Inf architecture step
#: (:class:`flatarch.NonFiniteError`); the same settings diverge again, so it is the run's outcome
DIVERGENCES = (DivergedError, NonFiniteError)
