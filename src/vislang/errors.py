"""One error hierarchy for vislang.

Every message says what was wrong, with which input, and what to do about it. The CLI prints
``str(error)`` on one line and exits non-zero; nothing else needs to catch more than
``VislangError``.
"""

from __future__ import annotations


class VislangError(Exception):
    """Base class of every error vislang raises on purpose."""

    exit_code = 1


class ModelNotFoundError(VislangError):
    """A checkpoint is neither a known name, a local directory, nor reachable on the hub."""

    exit_code = 3


class UnsupportedModelError(VislangError):
    """A checkpoint exists but is not a kind vislang can run (e.g. not CLIP or SigLIP)."""

    exit_code = 3


class ImageLoadError(VislangError):
    """An image file could not be read: missing, unreadable, corrupt, truncated, too large."""

    exit_code = 4

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


class ImageTooLargeError(ImageLoadError):
    """An image has more pixels than the limit (checked from the header, before decoding)."""


class TokenizeError(VislangError):
    """Text that cannot be tokenized as asked, e.g. longer than the context length."""

    exit_code = 2


class InputError(VislangError):
    """Bad arguments or data from the user: empty label list, missing folder, bad file."""

    exit_code = 2


class IndexBusyError(VislangError):
    """Another process is writing to the same search index."""

    exit_code = 5
