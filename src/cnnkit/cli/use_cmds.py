"""`cnnkit` use commands (placeholder until this group lands)."""


def register(subparsers) -> None:
    """Add this group's subcommands to the `cnnkit` parser."""
