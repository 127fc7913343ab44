"""``python -m connector`` runs the command line."""

from connector.cli import main

main(prog_name="connector")
