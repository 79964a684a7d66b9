"""The kit's own error types: what a user can fix, as opposed to a bug in the kit.

The command line catches these and prints their one-line message without a
traceback. Each message names the file (or config field), what is wrong with
it, and the fix.
"""

from __future__ import annotations

import re

# torch's DataLoader re-raises a worker's exception in the main process as
# `type(e)("Caught X in DataLoader worker process N.\nOriginal Traceback ...\n
# module.X: <message>")`. The message a user needs is that last line.
_WORKER_PREFIX = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")
_QUALIFIED = re.compile(r"^[\w.]+: ")


def _from_worker(message: str) -> str:
    if not _WORKER_PREFIX.match(message):
        return message
    lines = [line for line in message.splitlines() if line.strip()]
    return _QUALIFIED.sub("", lines[-1], count=1) if lines else message


class KitError(ValueError):
    """Base of the errors a user causes and can fix; one line, no traceback needed."""

    def __init__(self, message: str = ""):
        super().__init__(_from_worker(str(message)))


class DataError(KitError):
    """A data file that cannot be used as it is: annotations, detections or images."""


class AnnotationError(DataError):
    """An annotation or detection file with a missing or invalid field."""


class ImageReadError(DataError):
    """An image file that exists but cannot be decoded."""


class ImageMissingError(ImageReadError):
    """An image file that an annotation file names and that is not there."""


class GenerationAbandoned(KitError):
    """Generating a dataset stopped before its end on purpose (a time box ran out)."""


class ConfigError(KitError):
    """A config field outside its range, named as `section.field`."""


class RunLockedError(KitError):
    """A run directory that another process is writing."""


class DiskFullError(KitError):
    """A file the kit writes (a checkpoint, a table) that does not fit on its disk."""


class RunInterrupted(KitError):
    """A run stopped on SIGTERM or SIGINT, saved at a step boundary; rerunning resumes it
    (ocdlib/engine/interrupt.py). Exits with 128 + the signal's number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum

    def __reduce__(self):  # crosses process boundaries whole (a run side by side)
        return (type(self), (str(self), self.signum))


class UnknownNameError(KitError, KeyError):
    """A name the kit does not know: a preset, profile, experiment row, head or notebook."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingFileError(KitError, FileNotFoundError):
    """A file or folder the user pointed the kit at (or that a step needs) is not there."""


class ExistingRunError(KitError, FileExistsError):
    """A run folder already holds a run that the command would overwrite."""
