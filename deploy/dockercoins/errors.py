"""The one exception the CLI turns into a one-line error message."""


class UserError(Exception):
    """A problem the user can fix: printed as one line, exit status `code`, no traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
