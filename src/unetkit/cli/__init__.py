"""The `unetkit` command: parses arguments and calls the layers below."""
