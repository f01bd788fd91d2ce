"""The project's exception tree: one base, mapped to exit codes and HTTP status only in `api/`."""

from __future__ import annotations


class VnsearchError(Exception):
    """Base of every error vnsearch raises on purpose; its message names the fix."""


class DocumentReadError(VnsearchError):
    """A file could not be read as a document (unsupported, empty, binary, undecodable ...)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Raised in a segmenting process and re-raised in the indexer: rebuild from both parts.
        return (DocumentReadError, (self.path, self.reason))


class InvalidInputError(VnsearchError):
    """A query, parameter or input file is not acceptable; the message says what is."""


class IndexError_(VnsearchError):
    """An index folder is missing, damaged or built with another model."""


class ModelError(VnsearchError):
    """A model could not be built or loaded."""
