"""argparse value types shared by the subcommands: bad values become one-line usage errors, exit 2.

Every number a flag takes is bounded (paddy.core.config.LIMITS); `in_range` types check it and --help quotes it
(`limits_text`).
"""

import argparse
import math

from paddy.core.config import check_range, limits_text, parse_size
from paddy.core.errors import ConfigError


def positive_int(text):
    """An int > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def positive_float(text):
    """A finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {value}")
    return value


def in_range(name, kind=int):
    """An argparse type: an int (or float) within LIMITS[name], e.g. in_range("epochs")."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            word = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {word} in {limits_text(name)}, got {text!r}") from None
        try:
            return check_range(name, value, "value")
        except ConfigError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    parse.__name__ = name  # argparse names the type in some messages
    return parse


def size(text):
    """224 or HEIGHT,WIDTH; WIDTHxHEIGHT is refused here: training sizes are height first, as in fastai."""
    try:
        return parse_size(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
