"""The `dcode` command line (a terminal front end): `app.py` declares the commands, `propose.py`,
`readonly.py` and `bench.py` do their work, `review.py` is the one-key review the shell and the
hook share, `session.py` the settings, model and live view every command starts from."""

from dcode.cli.entry import main

__all__ = ["main"]
