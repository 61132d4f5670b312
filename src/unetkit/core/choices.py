"""The names the command line offers for choices that are not configuration keys. They live in
the lowest layer, below the modules that implement them, so that parsing a command (and
`unetkit --help`) imports neither an engine nor the configuration's validation library; a test
checks that each implementing module knows exactly these names."""

BACKENDS = ("torch", "onnx", "int8")  # predict --backend (inference.predictor)
EXPORT_FORMATS = ("onnx", "hub", "int8")  # export --format (deploy.export, deploy.quantize)
SUBMISSION_FORMATS = ("bkai-neopolyp", "carvana")  # submit --format (deploy.submit)
