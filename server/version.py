"""The running Segue version, from the installed package metadata."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("segue")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
