"""tom-stress: field measurement campaigns for the ToM protocol."""

from tomproto import __version__

__all__ = ["__version__"]
