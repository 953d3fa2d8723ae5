"""The zoo's version, in a module of its own so that low layers can read it without importing ``zoo``."""

__version__ = "0.1.0"
