"""From a weights file to detections (the training checkpoint format itself is ``models.checkpoint``):
the TorchScript-safe pre-process + model + decode module (``inference``), the TorchScript and ONNX
exports (``export``), ONNX Runtime as the CPU model stage (``ort_backend``), a numpy-only ONNX runner
(``onnx_runner``), ``torch.export`` programs (``pt2``), and ``predictor.load_predictor``: the one function
that opens a checkpoint, a TorchScript, ``.pt2`` or ONNX file for detect, eval, explain, the demo and the
benchmarks. No Lightning, no albumentations: this layer is what a deployment imports."""
