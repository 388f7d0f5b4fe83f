"""The installed version of cxrclassify, looked up once. Imports nothing from the library."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cxrclassify")
except PackageNotFoundError:  # pragma: no cover - a source tree without install
    __version__ = "0.0.0"
