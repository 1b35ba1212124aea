"""The `cnnkit` command: subcommands over the library; user errors become one line and exit 2."""

def main(argv=None) -> int:
    return 0
