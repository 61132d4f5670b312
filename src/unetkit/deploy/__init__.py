"""Taking a model out: ONNX and int8 export, submissions, the web page."""
