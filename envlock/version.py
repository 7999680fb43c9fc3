"""envlock's version, in the base layer: any module may import it without importing the package's
lazy public names (``envlock/__init__.py``), which belong to the entry-point layer."""

__version__ = "0.1.0"
