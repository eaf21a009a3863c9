"""`python -m rag_ingest` runs the ingest service."""

from rag_core.server import run_service

from rag_ingest.app import SERVICE

if __name__ == "__main__":
    run_service(SERVICE)
