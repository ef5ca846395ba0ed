"""Inference runtimes behind one small interface (base.ModelRuntime): TensorFlow (the Keras
model itself, the reference) and OpenVINO (the Keras model converted once, IR cached on disk).
`select.load_runtime` picks and loads one."""
