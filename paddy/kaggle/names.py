"""Kaggle's naming rules: user names, kernel titles and the slugs Kaggle derives from them."""

import re

from slugify import slugify

from paddy.core.errors import ConfigError

TITLE_LENGTH = (5, 50)  # Kaggle refuses kernel titles outside this range


USER_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$")


SLUG_PATTERN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
COMPETITION_LENGTH = (2, 100)  # Kaggle's competition URLs: lower-case letters, digits and single hyphens


def kernel_slug(title: str) -> str:
    """The slug Kaggle derives from a title (the same slugify the kaggle client checks pushes with)."""
    return slugify(title)


def check_user(user: object) -> str:
    """A Kaggle username, lower case; ConfigError when it cannot be one."""
    name = str(user or "").strip().lower()
    if not USER_PATTERN.match(name):
        raise ConfigError(f"--user must be your Kaggle username (letters, digits, - or _), got {user!r}")
    return name


def check_title(title: str) -> str:
    """A kernel title Kaggle accepts (5 to 50 characters) whose slug is valid; returns the slug."""
    low, high = TITLE_LENGTH
    if not low <= len(title) <= high:
        raise ConfigError(f"kernel title {title!r} must be {low} to {high} characters long; shorten the plan name")
    slug = kernel_slug(title)
    if len(slug) < low or not SLUG_PATTERN.match(slug):
        raise ConfigError(f"kernel title {title!r} gives slug {slug!r}; use letters and digits in the title")
    return slug


def check_competition(slug: object) -> str:
    """A competition slug as Kaggle spells them (e.g. paddy-disease-classification); ConfigError otherwise."""
    text = str(slug or "")
    low, high = COMPETITION_LENGTH
    if not SLUG_PATTERN.match(text) or not low <= len(text) <= high:
        raise ConfigError(f"--competition must be a Kaggle competition slug ({low} to {high} lower-case letters, "
                          f"digits and single hyphens, as in its URL), got {slug!r}")
    return text
