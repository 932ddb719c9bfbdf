"""The one exception type that entry points turn into a one-line message."""


class IRNError(Exception):
    """A user-facing problem with an input (path, image, checkpoint, config).

    The message names the file or key and the problem; entry points print it as
    ``error: <message>`` and exit with status 2 instead of showing a traceback.
    """
