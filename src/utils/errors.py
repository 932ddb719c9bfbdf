"""The one exception type that entry points turn into a one-line message."""


class IRNError(Exception):
    """A user-facing problem with an input (path, image, checkpoint, config).

    The message names the file or key and the problem; entry points print it as
    ``error: <message>`` and exit with status 2 instead of showing a traceback.
    """


class WriteError(IRNError):
    """An output file could not be written (a full disk, no permission): the later outputs of
    the same run would fail too, so tools stop at the first one."""
