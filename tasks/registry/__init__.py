"""Registry stage: model artifacts and where they are stored, the champion/challenger registry, the
promotion gates, promotion and ONNX export."""
