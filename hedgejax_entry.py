"""The `hedgejax` command's entry point, outside the package so that it runs before jax.

Importing `hedgejax` loads jax, which takes a second or two; a Ctrl-C then would end in a
KeyboardInterrupt traceback before `hedgejax.cli.main` could catch it. This module catches
it and prints one line, like the command line does everywhere else (exit status 130,
128 + SIGINT, the shells' convention).
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from hedgejax.cli import main as cli_main
    except KeyboardInterrupt:
        print("hedgejax: interrupted", file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
