"""The offline embedder: ONNX graph == numpy forward pass of the same weights; sane vectors."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from rag_core.embedding.base import Embedder
from rag_core.embedding.local import (
    DIMENSION,
    LocalEmbedder,
    ensure_onnx_model,
)
from rag_core.embedding.minilm_graph import load_weights, reference_embeddings
from rag_core.embedding.wordpiece import packaged_model_dir
from tokenizers import Tokenizer

TEXTS = [
    "A man is eating food.",
    "Reciprocal rank fusion merges the dense and the lexical ranking into one list.",
    "Diffusion tensor imaging of cerebral white matter in newborns shows how it develops; "
    "anisotropy rises and diffusion falls with gestational age. " * 6,
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def fp32(cache_dir: Path) -> LocalEmbedder:
    return LocalEmbedder(cache_dir, variant="fp32")


def _encode(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    tokenizer = Tokenizer.from_file(str(packaged_model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask


def test_onnx_graph_matches_a_numpy_forward_pass_of_the_same_weights(cache_dir: Path) -> None:
    weights = load_weights(packaged_model_dir() / "model.safetensors")
    ids, mask = _encode(TEXTS)
    session = ort.InferenceSession(str(ensure_onnx_model(cache_dir, "fp32")))
    onnx_out = session.run(["embeddings"], {"input_ids": ids, "attention_mask": mask})[0]
    reference = reference_embeddings(weights, ids, mask)
    cosine = (onnx_out * reference).sum(axis=1)
    assert cosine.min() > 0.999
    # The longest text uses more than the tokenizer's shipped 128-token limit.
    assert mask[2].sum() > 128


def test_vectors_are_unit_length_and_semantic(fp32: LocalEmbedder) -> None:
    vectors = fp32.embed_sync(
        [
            "How do I bake bread at home?",
            "A simple recipe for homemade bread in your oven.",
            "The stock market fell sharply on Tuesday.",
        ]
    )
    assert vectors.shape == (3, DIMENSION)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > 0.6
    assert similar > unrelated + 0.3


def test_order_and_threads_do_not_change_results(cache_dir: Path, fp32: LocalEmbedder) -> None:
    one_thread = LocalEmbedder(cache_dir, variant="fp32", threads=1)
    together = fp32.embed_sync(TEXTS)
    assert np.array_equal(one_thread.embed_sync(TEXTS), together)
    assert np.array_equal(fp32.embed_sync(TEXTS[::-1])[::-1], together)


def test_an_int8_vector_depends_on_the_text_alone_not_on_its_call(cache_dir: Path) -> None:
    """int8 quantizes each model run by its whole input: a text batched beside others (padded
    or not) used to get another vector than on its own (components 0.017 apart)."""
    int8 = LocalEmbedder(cache_dir, variant="int8")
    for text in (TEXTS[0], "the red cat"):
        alone = int8.embed_sync([text])[0]
        beside = int8.embed_sync([TEXTS[2], text, "a blue dog", TEXTS[1] + " " + TEXTS[0]])
        assert np.array_equal(beside[1], alone)
    assert int8.count_tokens(["the red cat", "a blue dog"]) == [3, 3]  # one length, unpadded


async def test_async_interface_and_int8_variant_agree(cache_dir: Path, fp32: LocalEmbedder) -> None:
    int8 = LocalEmbedder(cache_dir, variant="int8")
    assert isinstance(int8, Embedder)
    assert (fp32.model, int8.model) == ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2-int8")
    a = await fp32.embed_documents(TEXTS)
    b = await int8.embed_documents(TEXTS)
    assert (a * b).sum(axis=1).min() > 0.98
    query = await int8.embed_query(TEXTS[0])
    assert query.shape == (DIMENSION,)
    assert (await fp32.embed_documents([])).shape == (0, DIMENSION)


def test_int8_products_fit_the_16_bit_sums_of_cpus_without_vnni(cache_dir: Path) -> None:
    """onnxruntime multiplies the int8 model's uint8 inputs (0..255) by its int8 weights with
    VPMADDUBSW on AVX2 and AVX-512 CPUs without VNNI, adding each two products into 16 bits
    with saturation; VNNI CPUs add in 32 bits. In 8-bit weights (up to 127) the sums clipped
    on one kind of CPU and not on the other, and a text's vector differed between them (mean
    cosine 0.9935). Every pair of products must fit: the vector is then the same on both."""
    model = onnx.load(str(ensure_onnx_model(cache_dir, "int8")))
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    products = [n for n in model.graph.node if n.op_type == "MatMulInteger"]
    assert len(products) == 6 * 6  # every layer's query, key, value, output and two dense
    for node in products:
        weights, weights_zero = constants[node.input[1]], constants[node.input[3]]
        assert weights.dtype == np.int8, node.name
        assert not weights_zero.any(), node.name
        assert 2 * 255 * int(np.abs(weights.astype(np.int32)).max()) <= 32767, node.name


def test_the_int8_file_of_an_earlier_recipe_is_removed_when_the_current_one_is_built(
    tmp_path: Path,
) -> None:
    """The 8-bit file (model.int8.onnx, 59 MB) was left beside the 7-bit one in every data
    directory; the 7-bit one is named for its recipe, so each is told apart."""
    former = ensure_onnx_model(tmp_path, "fp32").parent / "model.int8.onnx"
    former.write_bytes(b"an earlier build")
    current = ensure_onnx_model(tmp_path, "int8")
    assert current.name == "model.int8-w7.onnx"
    assert current.exists()
    assert not former.exists()


def test_a_built_model_is_used_from_a_read_only_directory(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production images' /opt/models is read-only: there even unlinking a missing file
    fails (EROFS), and a clean-up of former files at every start stopped the worker."""
    built = ensure_onnx_model(cache_dir, "int8")

    def read_only(self: Path, missing_ok: bool = False) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    assert ensure_onnx_model(cache_dir, "int8") == built


def test_model_file_is_built_once_and_reused(cache_dir: Path) -> None:
    first = ensure_onnx_model(cache_dir, "fp32")
    mtime = first.stat().st_mtime_ns
    assert ensure_onnx_model(cache_dir, "fp32") == first
    assert first.stat().st_mtime_ns == mtime
    assert oct(first.stat().st_mode & 0o777) == "0o644"


def test_token_counts_exclude_special_tokens(fp32: LocalEmbedder) -> None:
    assert fp32.count_tokens(["hello world", ""]) == [2, 0]
    assert fp32.max_tokens == 254
