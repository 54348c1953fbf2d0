"""``python -m himari`` runs the command line."""

from himari.cli import main

main()
