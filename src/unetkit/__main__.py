"""`python -m unetkit ...` (what `torchrun -m unetkit` runs) is the `unetkit` command."""

from unetkit.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
