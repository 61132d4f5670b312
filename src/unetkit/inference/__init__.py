"""Using a trained model: the Predictor, tiling, the operating point, ONNX models, summaries."""
