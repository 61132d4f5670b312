"""The run folder: writing it, reading it as untrusted input, rebuilding its model, ensembles."""
