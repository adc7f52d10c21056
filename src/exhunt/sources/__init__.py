"""Artifact readers. Each module reads one kind of artifact; `base.SOURCES` lists them in sniffing order."""
