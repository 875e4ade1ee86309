"""ONNX: export, int8 quantisation, the onnxruntime session, metadata."""
