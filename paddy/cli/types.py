"""argparse value types shared by the subcommands: bad values become one-line usage errors, exit 2."""

import argparse
import math

from paddy.core.config import parse_size
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


def size(text):
    """224 or HEIGHT,WIDTH; WIDTHxHEIGHT is refused here: training sizes are height first, as in fastai."""
    try:
        return parse_size(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
