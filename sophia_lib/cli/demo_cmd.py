"""Placeholder; replaced by its owner."""


def demo() -> None:
    """Run the demo."""
