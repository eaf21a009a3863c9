"""The peer: what a user would build instead of RAG Engine, the way LlamaIndex's documentation
shows it — an ``IngestionPipeline`` (``SentenceSplitter`` + an embedding model) writing into a
``ChromaVectorStore``, and ``VectorStoreIndex.as_retriever`` to search it. Same Chroma server,
same ONNX model, same batch size, same chunk size and overlap counted with the same tokenizer,
so the comparison is of the pipelines, not of the model.

Offline: llama-index-core ships its NLTK and tiktoken caches inside the wheel, and the
tokenizer given to the splitter is the model's own, so nothing is downloaded."""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import onnxruntime as ort
from chromadb.config import Settings as ChromaSettings
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.vector_stores.chroma import ChromaVectorStore
from pydantic import PrivateAttr
from rag_core.embedding.local import (
    MAX_TOKENS,
    MODEL_NAME,
    ensure_onnx_model,
)
from rag_core.embedding.wordpiece import packaged_model_dir
from stats import summarize
from tokenizers import Tokenizer

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
PEER_BATCH = 500


def _nltk_data(cache: Path) -> None:
    """Point NLTK at a copy of the data llama-index-core ships. NLTK refuses to open the
    bundled files in place when the installer hard-linked them (uv does), so copy them."""
    target = cache / "nltk_data"
    if not target.exists():
        import llama_index.core  # noqa: PLC0415

        bundled = Path(llama_index.core.__file__).parent / "_static" / "nltk_cache"
        partial = target.with_name("nltk_data.partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(bundled, partial, copy_function=shutil.copyfile)
        partial.rename(target)
    os.environ["NLTK_DATA"] = str(target)


class OnnxEmbedding(BaseEmbedding):  # type: ignore[misc]  # Any to mypy: pyproject.toml
    """LlamaIndex's custom-embedding recipe around the same ONNX file and tokenizer RAG Engine
    uses, run the way a user would: one onnxruntime session with its default threading (every
    core on each batch), called batch by batch."""

    _session: ort.InferenceSession = PrivateAttr()
    _tokenizer: Tokenizer = PrivateAttr()

    def __init__(self, cache: Path, batch_size: int) -> None:
        super().__init__(model_name=f"{MODEL_NAME}-int8", embed_batch_size=batch_size)
        self._session = ort.InferenceSession(
            str(ensure_onnx_model(cache, "int8")), providers=["CPUExecutionProvider"]
        )
        self._tokenizer = Tokenizer.from_file(str(packaged_model_dir() / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token

    def count(self, text: str) -> list[int]:
        """Token ids without special tokens: the splitter's length function."""
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False).ids
        return ids

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._get_text_embeddings([query])[0]

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        batch = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in batch], dtype=np.int64)
        mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
        out = self._session.run(["embeddings"], {"input_ids": ids, "attention_mask": mask})[0]
        return out.tolist()  # type: ignore[no-any-return]


def _store(chroma_port: int, name: str) -> ChromaVectorStore:
    client = chromadb.HttpClient(
        host="127.0.0.1", port=chroma_port, settings=ChromaSettings(anonymized_telemetry=False)
    )
    # No embedding function: Chroma's default one would download a model.
    collection = client.get_or_create_collection(
        name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    return ChromaVectorStore(chroma_collection=collection)


def ingest(
    docs: list[dict[str, str]],
    cache: Path,
    chroma_port: int,
    *,
    chunk_size: int,
    overlap: int,
    batch_size: int,
    name: str = "peer-llamaindex",
) -> dict[str, Any]:
    _nltk_data(cache)
    embed = OnnxEmbedding(cache, batch_size)
    # Token counts of the model's own tokenizer, as RAG Engine's chunker counts them.
    splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=overlap, tokenizer=embed.count)
    embed.get_text_embedding_batch(["warm up"] * 8)
    store = _store(chroma_port, name)
    pipeline = IngestionPipeline(transformations=[splitter, embed], vector_store=store)
    # The peer has no title field: the title leads the text, as a plain document would have it.
    documents = [
        Document(text=f"{d.get('title', '')}\n\n{d['text']}".strip(), id_=d["id"]) for d in docs
    ]
    started, cpu_started = time.perf_counter(), time.process_time()
    # ChromaVectorStore writes up to 41,665 embeddings per call; a Chroma server takes 5,461
    # (max_batch_size), and the whole corpus in one run fails. A user runs the pipeline on
    # batches of documents instead: 500, as RAG Engine's documents are posted.
    chunks = 0
    for start in range(0, len(documents), PEER_BATCH):
        chunks += len(pipeline.run(documents=documents[start : start + PEER_BATCH]))
    seconds = time.perf_counter() - started
    return {
        "chunks": chunks,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu_started,
        "chunks_per_s": chunks / seconds,
        "docs_per_s": len(docs) / seconds,
    }


class PeerRetriever:
    """``VectorStoreIndex.from_vector_store(...).as_retriever(similarity_top_k=k)``."""

    def __init__(self, cache: Path, chroma_port: int, name: str = "peer-llamaindex") -> None:
        Settings.embed_model = OnnxEmbedding(cache, 32)
        self.index = VectorStoreIndex.from_vector_store(_store(chroma_port, name))

    def search(self, query: str, k: int) -> list[str]:
        """Document ids, best first (a document may repeat, once per chunk)."""
        nodes = self.index.as_retriever(similarity_top_k=k).retrieve(query)
        return [str(n.node.ref_doc_id) for n in nodes]

    def timed(self, queries: list[str], k: int = 10) -> list[float]:
        samples = []
        for text in queries:
            started = time.perf_counter()
            self.search(text, k)
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    def under_load(self, queries: list[str], in_flight: int, seconds: float) -> dict[str, float]:
        """``in_flight`` threads calling ``retrieve`` back to back for ``seconds`` (how a user
        would serve it: a sync endpoint in a thread pool). Chroma's client and the embedding
        sessions are thread-safe."""
        retriever = self.index.as_retriever(similarity_top_k=10)
        samples: list[float] = []
        deadline = time.perf_counter() + seconds

        def user(offset: int) -> None:
            i = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                retriever.retrieve(queries[i % len(queries)])
                samples.append((time.perf_counter() - started) * 1000)
                i += in_flight

        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=in_flight) as pool:
            list(pool.map(user, range(in_flight)))
        return summarize(samples, time.perf_counter() - began)
