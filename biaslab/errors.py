"""Exceptions that biaslab raises for bad input and failed steps.

The command line turns each of these into a one-line message and a non-zero exit code,
so every message names the offending value and the change to make.
"""


class BiaslabError(Exception):
    """Base class of every error that biaslab raises on purpose."""


class ConfigError(BiaslabError, ValueError):
    """A setting is invalid: out of range, of the wrong type, or unknown."""


class DataError(BiaslabError):
    """A data set is missing, corrupt or in an unsupported layout."""


class PluginError(BiaslabError):
    """A plugin registered something invalid or clashes with another plugin."""


class RunNotFoundError(BiaslabError):
    """An MLflow run, experiment or artifact that was named does not exist."""
