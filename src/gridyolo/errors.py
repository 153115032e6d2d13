"""Errors that the command line turns into one clear line (no traceback)."""


class GridyoloError(Exception):
    """Base class of errors caused by the user's input (files, configs, arguments)."""


class DatasetError(GridyoloError):
    """A dataset file is missing, unreadable or malformed; the message names the file (and line)."""
