"""The version of unetkit, in one place."""

__version__ = "0.1.0"
