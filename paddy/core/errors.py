"""The kit's one base exception: the CLI prints its message as one line and exits 2."""


class PaddyError(Exception):
    """A problem the user can fix: the message says what is wrong and what to do."""


class DataError(PaddyError):
    """A competition folder, CSV or image that is missing, malformed or inconsistent."""


class ConfigError(PaddyError):
    """A training config, plan file or command-line value that does not make sense."""


class KaggleError(PaddyError):
    """The Kaggle API refused, failed, or could not be reached."""
