"""`python -m rag_gateway` runs the gateway service."""

from rag_core.server import run_service

from rag_gateway.app import SERVICE

if __name__ == "__main__":
    run_service(SERVICE)
