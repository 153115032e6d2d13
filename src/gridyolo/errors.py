"""Errors that the command line turns into one clear line (no traceback)."""


class GridyoloError(Exception):
    """Base class of errors caused by the user's input (files, configs, arguments)."""


class DatasetError(GridyoloError):
    """A dataset file is missing, unreadable or malformed; the message names the file (and line)."""


def one_line(exc: BaseException) -> str:
    """The message of a user-input error as one line.

    A ``DatasetError`` raised in a DataLoader worker comes back re-raised by torch with the worker's
    whole traceback as its message ("Caught DatasetError in DataLoader worker process 0. Original
    Traceback ..."); its last line holds the original message.
    """
    text = str(exc)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        name = exc.__class__.__name__
        text = last.split(f"{name}: ", 1)[1] if f"{name}: " in last else last
    return " ".join(text.split())
