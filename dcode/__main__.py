"""`python -m dcode`."""

from dcode.cli import main

main()
