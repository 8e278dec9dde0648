"""Command-line interface of flowjepa (``flowjepa --help``)."""
