"""Placeholder; replaced by its owner."""


def doctor() -> None:
    """Report what is installed."""
