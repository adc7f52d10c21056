"""exhunt: find out whether a Microsoft Exchange server was broken into, how, and what was taken."""

__version__ = "0.1.0"
