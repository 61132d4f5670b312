"""The lowest layer: atomic file writing, optional extras, the version. Imports nothing of
unetkit."""
