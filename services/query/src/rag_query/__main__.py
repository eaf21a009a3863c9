"""`python -m rag_query` runs the query service."""

from rag_core.server import run_service

from rag_query.app import SERVICE

if __name__ == "__main__":
    run_service(SERVICE)
