"""The one error type of the data layer: a message a user can act on."""


class DataError(ValueError):
    """Bad or missing data; the message says what is wrong and how to fix it."""
