"""One error type for everything a user can get wrong: the CLI prints it on one line, exit 2."""


class OmdpError(Exception):
    """A problem with the user's input: says what is wrong, where, and how to fix it."""

    def __init__(self, what: str, fix: str | None = None):
        self.what = what
        self.fix = fix
        super().__init__(f"{what} — {fix}" if fix else what)
