"""The package version, in one place: the package front, run manifests and the build read it."""

__version__ = "0.1.0"
