"""program-reporting: the nightly warehouse pipeline for small-business support programs."""

__version__ = "0.1.0"
