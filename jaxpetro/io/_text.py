"""The one reader of text files for io/: a file's text, or an InputError that says what is wrong.

Every text reader (JEOL, Cameca and CalcImage exports) opens its files through here, so a
user sees the same wording whatever the instrument: the file is named, a missing file
reminds that a relative path written in a config file resolves from that config file's
folder (a path given on the command line, from the working directory), a file that
cannot be read or is not text says so. Decoding is lenient, as laboratory PCs write
files: UTF-8 (with or without a byte-order mark), UTF-16 with a byte-order mark, then
the reader's own fallbacks (e.g. Shift-JIS for JEOL), and finally latin-1, which never
fails.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from pathlib import Path

from jaxpetro.errors import InputError

__all__ = ["numbered_lines", "read_text", "text_lines"]

_SNIFF = 8192  # bytes looked at for NUL bytes: binary files have them early, text files never


def read_text(path: str | Path, what: str, encodings: Sequence[str] = ("utf-8-sig",)) -> str:
    """The text of ``path``.

    Args:
        path: the file.
        what: what the file is, for the message (``"Cameca map"``, ``"spot file"``).
        encodings: tried in turn after UTF-16 (byte-order mark only); latin-1 ends the list.

    Raises:
        InputError: the file does not exist, cannot be read (a folder, no permission), or
            is not text (NUL bytes without a UTF-16 byte-order mark: a binary file).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} '{path}' not found; check the path (a relative path in a config file resolves "
                         f"from the config file's folder, one given on the command line from the working "
                         f"directory).") from None
    except OSError as err:
        raise InputError(f"{what} '{path}' cannot be read ({err.strerror or err}); check that it is a readable "
                         f"file.") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\x00" in raw[:_SNIFF]:
        raise InputError(f"{what} '{path}' is not a text file (it holds binary data); give the instrument's text "
                         f"export.")
    for encoding in encodings:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            pass
    return raw.decode("latin-1")  # never fails: every byte is a character


def numbered_lines(text: str) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers, stripped (CR, LF and spaces)."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def text_lines(path: str | Path, what: str, encodings: Sequence[str] = ("utf-8-sig",),
               empty_hint: str = "re-export it") -> list[tuple[int, str]]:
    """:func:`numbered_lines` of :func:`read_text`; an InputError ``is empty; <empty_hint>.`` when none."""
    lines = numbered_lines(read_text(path, what, encodings))
    if not lines:
        raise InputError(f"{what} '{path}' is empty; {empty_hint}.")
    return lines
