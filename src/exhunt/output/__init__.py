"""Renderers of scan results: terminal, JSON. They read results and never change them."""
