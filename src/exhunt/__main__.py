"""`python -m exhunt` runs the command line."""

from exhunt.cli import app

if __name__ == "__main__":
    app()
