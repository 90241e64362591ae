"""`python -m afterbeep`: the command line."""

from afterbeep.cli import main

main()
