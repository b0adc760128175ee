"""User-facing errors.

Every mistake a user can make (bad config, missing upstream stage, unreadable shards, a checkpoint of
another architecture) raises :class:`UsageError`. The stage entry point turns it into a single line on
stderr and exit code 2; anything else is a bug and keeps its traceback.
"""


class UsageError(Exception):
    """A user mistake: the message names the problem and the fix, on one line."""

    exit_code = 2


class DataError(UsageError):
    """Shards, images or labels that cannot be used as they are."""


class UpstreamMissing(UsageError):
    """A stage's input (the previous stage's manifest or artifact) is missing or incomplete."""


class RunLocked(UsageError):
    """Another process is writing the same stage directory."""
