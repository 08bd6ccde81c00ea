"""Exceptions that jaxpetro raises for problems the user can fix.

The CLI prints the message of any :class:`JaxpetroError` as one paragraph on stderr
and exits non-zero, without a traceback; so every message names the file or key at
fault and says how to fix it.
"""


class JaxpetroError(Exception):
    """Base class of all user-facing jaxpetro errors."""

    exit_code = 1


class ConfigError(JaxpetroError, ValueError):
    """A configuration file or ``--set`` override is invalid (unknown key, wrong type...)."""

    exit_code = 2


class InputError(JaxpetroError, ValueError):
    """Input data are missing, unreadable or inconsistent (NaN counts, shape mismatch...)."""

    exit_code = 3


class ConvergenceError(JaxpetroError, RuntimeError):
    """A solver failed to produce a usable result (non-finite values, no progress)."""

    exit_code = 4


class OutputError(JaxpetroError, OSError):
    """Results could not be written (directory not writable, disk full...)."""

    exit_code = 5
