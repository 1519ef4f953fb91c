"""The package version, in one place (`blocks --version`, run folders, exported files)."""

__version__ = "0.1.0"
