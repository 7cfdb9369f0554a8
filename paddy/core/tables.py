"""The kit's one CSV reader: pandas.read_csv with one-line DataErrors."""

from pathlib import Path

import pandas as pd

from paddy.core.errors import DataError


def read_csv(path: str | Path, missing: str = "", what: str = "CSV", **kwargs) -> pd.DataFrame:
    """pandas.read_csv where a missing file says `missing` (what to do) and a broken one says why, in one line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing" + (f": {missing}" if missing else ""))
    try:
        return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty; give a {what} with a header and at least one row") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path} is not a readable {what} ({reason}); fix or replace it") from None
