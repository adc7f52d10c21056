"""Artifact readers. Each module reads one kind of artifact and declares the families it yields;
`exhunt.reader.SOURCES` lists them in sniffing order."""
