"""`python -m exhunt` runs the command line."""

from exhunt.cli import app

app()
