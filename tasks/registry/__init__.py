"""Registry stage: model artifacts, the champion/challenger registry, promotion and ONNX export."""
