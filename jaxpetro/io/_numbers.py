"""The one parser of numbers in text tables (CSV cells, condition-file fields).

Every reader in io/ turns cells into numbers through here, so the rules are the same in
every file a user gives us: surrounding blanks are ignored; an empty cell or one of
``MISSING_TOKENS`` is "missing" (NaN, or an error where a value is required); anything
else that ``float`` cannot read is an :class:`~jaxpetro.errors.InputError` naming the
file, line and column (``where``) and saying what to write instead.
"""

from __future__ import annotations

import math

from jaxpetro.errors import InputError

#: Cell texts read as a missing value (case-insensitive).
MISSING_TOKENS = frozenset({"", "nan", "na", "n/a"})


def is_number(text: str) -> bool:
    """Whether ``text`` reads as a float (``inf`` and ``nan`` included)."""
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def is_missing(text: str) -> bool:
    """Whether ``text`` is an empty or explicitly missing cell."""
    return text.strip().lower() in MISSING_TOKENS


def parse_number(text: str, where: str, *, missing: float | None = math.nan, finite: bool = True, hint: str = "") -> float:
    """The number in ``text``.

    Args:
        text: the cell.
        where: what to name in an error, e.g. ``"profile 'grt.csv', line 4, column 'X_alm'"``.
        missing: value of an empty/missing cell; ``None`` makes a missing cell an error.
        finite: whether ``inf`` (and a literal ``nan`` when ``missing`` is None) is an error.
        hint: appended to the error message (how to fix it).

    Raises:
        InputError: ``text`` is not a number (or is missing / not finite when not allowed).
    """
    cell = text.strip()
    if is_missing(cell):
        if missing is None:
            raise InputError(f"{where}: a value is required here but the cell is {'empty' if not cell else repr(cell)}{hint}.")
        return missing
    try:
        value = float(cell)
    except ValueError:
        raise InputError(f"{where}: '{cell}' is not a number{hint}.") from None
    if finite and not math.isfinite(value):
        raise InputError(f"{where}: '{cell}' is not a finite number{hint}.")
    return value


__all__ = ["MISSING_TOKENS", "is_missing", "is_number", "parse_number"]
