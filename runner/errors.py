"""The one exception type that reaches the user as a one-line message, never a traceback."""


class UserError(Exception):
    """Bad input or an unmet precondition the user can fix; printed as `slmbench: <message>`."""

    exit_code = 2
