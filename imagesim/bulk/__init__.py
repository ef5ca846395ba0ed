"""Bulk engines beside the gRPC path: vector dumps and the Ray Data engine, which runs the
Embedder's own code in actors. The CLI uses them; they use the Embedder's modules but never the
client's, and neither the client nor the Embedder imports anything else of each other.

- common: what every engine shares (a file's key and default metadata, a run's report)
- parquet_dump: the .parquet vector dump (checkpointed, atomic, resumable; needs pyarrow)
- batch_inference: the Embedder's decode (embedder_server.preprocess.decode_batch) and model
  on column batches, for the Ray engine's actors
- ray_dump: the Ray Data engine, driver side (`imagesim dump --engine ray`)

(The .npz dump over gRPC is a client engine: client/dump.py.) Heavy dependencies stay
behind their modules: importing this package imports nothing, pyarrow is imported by
parquet_dump, Ray by ray_dump.import_ray, the model's runtimes (OpenVINO, TensorFlow) when
batch_inference loads a model.
"""
