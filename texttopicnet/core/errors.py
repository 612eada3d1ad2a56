"""Error types that mean "the user gave us something we cannot use".

Stage scripts catch :class:`UserError` at the top level (see :func:`texttopicnet.core.cli.run_main`)
and print one clear line with exit code 2 instead of a traceback.
"""


class UserError(Exception):
    """A problem with the user's input (paths, data, arguments), not a bug."""


class DataError(UserError):
    """A dataset folder or file is missing or malformed.

    The message should name the path, say what is wrong and how to get the data.
    """
