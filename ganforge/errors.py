"""Errors meant for users: each names the file or value at fault and what was expected.

Anything raised as a :class:`GanforgeError` is printed by the CLI as one line, without a
traceback. Tracebacks are reserved for bugs in ganforge itself.
"""


class GanforgeError(Exception):
    """Base class of every error caused by a user's input, files or settings."""


class DataError(GanforgeError):
    """An image folder, image file or captions file cannot be used."""


class ConfigError(GanforgeError):
    """An option or configuration value is out of range or unknown."""


class CheckpointError(GanforgeError):
    """A checkpoint or saved model is missing, unreadable or belongs to another model."""


class TrainingDiverged(GanforgeError):
    """A loss or weight became NaN or infinite; the last good checkpoint is kept."""


class MissingDependency(GanforgeError):
    """An optional package or weights file is needed for this feature."""


class ImageTooSmall(DataError):
    """An image is smaller than the size a model is trained at."""


class WrongFamilyCheckpoint(CheckpointError):
    """A readable checkpoint written by another model family."""
