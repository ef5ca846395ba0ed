"""Reductions of the full vectors to a smaller space (PCA or an autoencoder): `reducer` (load,
save, apply; numpy only, used by the Embedder), `train`, `evaluate` (Annoy: the `reduction`
extra; the autoencoder needs Keras, also in that extra)."""
