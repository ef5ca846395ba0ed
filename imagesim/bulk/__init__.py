"""Bulk engines: embedding a whole folder, shared by the `imagesim` CLI and the Embedder.

- common: what every engine shares (a file's key and default metadata, a run's report)
- dump: the .npz vector dump, and embedding a folder into a dump over gRPC (an Embedder)
- parquet_dump: the .parquet vector dump (checkpointed, atomic, resumable; needs pyarrow)
- batch_inference: the Embedder's own decode and model on column batches (the Ray engine's
  actors, and int8 calibration in embedder_server.runtimes.quantize)
- ray_dump: the Ray Data engine, driver side (`imagesim dump --engine ray`)

Heavy dependencies stay behind their modules: importing this package imports nothing, pyarrow
is imported by parquet_dump, Ray by ray_dump.import_ray, the model's runtimes (OpenVINO,
TensorFlow) when batch_inference loads a model. The client never imports embedder_server and
the Embedder never imports the client: what both need lives here.
"""
