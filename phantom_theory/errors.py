"""The one exception users see as a message instead of a traceback."""


class PhantomError(Exception):
    """A user-facing error: one sentence naming the bad value and the fix.

    The CLI prints it as ``phantom: error: <message>`` and exits with status 2.
    Anything else that escapes is a bug and keeps its traceback.
    """
