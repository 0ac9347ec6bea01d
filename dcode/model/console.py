"""Rich consoles that honour NO_COLOR and TERM=dumb.

They sit at the bottom of the data path because the model layer draws progress bars (downloads,
conversions) on stderr; every front end writes through the same consoles.
"""

from __future__ import annotations

import os

from rich.console import Console


def plain_terminal() -> bool:
    return bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"


def stderr_console() -> Console:
    plain = plain_terminal()
    return Console(stderr=True, no_color=plain, force_terminal=None if not plain else False, highlight=False,
                   soft_wrap=True)


def stdout_console() -> Console:
    plain = plain_terminal()
    return Console(no_color=plain, force_terminal=None if not plain else False, highlight=False, soft_wrap=True)
