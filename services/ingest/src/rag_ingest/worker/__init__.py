"""The ingest worker: arq tasks that parse, chunk, embed and store documents."""
