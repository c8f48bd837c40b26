"""Turn expected failures into one clear line on stderr and a non-zero exit (what DVC needs)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# Bad input, not a bug: report in one line, no traceback.
EXPECTED = (ValueError, OSError, KeyError)


def one_line_errors(func: F) -> F:
    """Decorator for stage entry points: ``error: <message>`` and exit code 1 on bad input."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            return func(*args, **kwargs)
        except EXPECTED as err:
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper  # type: ignore[return-value]
