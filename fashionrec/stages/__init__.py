"""The pipeline's stages, each a plain typed function that also runs in-process: ingest (validate,
quarantine, split by time), transform (Beam + tensorflow-transform features), train (the two-tower
model) and export (every product's embedding, the pooling settings and the popularity prior). The KFP
components (``components/``) are thin wrappers over these."""
