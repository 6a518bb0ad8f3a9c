"""Errors of the job pool and of job handlers."""

from __future__ import annotations


class JobError(Exception):
    """A request the job pool refuses: unknown id or kind, or an invalid status change."""


class TransientError(Exception):
    """A failure worth retrying (HTTP 429/5xx, a timeout, a refused connection)."""


class PermanentError(Exception):
    """A failure that retrying cannot fix; the job fails at once with this reason."""


class JobCancelled(Exception):
    """Raised inside a handler at its next step after a cancel was requested."""
