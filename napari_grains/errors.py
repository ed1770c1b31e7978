"""The one exception type for errors a user can cause."""


class GrainsError(Exception):
    """A problem the user can fix: a bad file, a wrong shape, an unknown model, bad parameters.

    The message always says what went wrong and what to do about it. The command line prints
    it without a traceback; the napari face shows it as a notification.
    """
