"""Sentence embeddings for meaning-level matching: all-MiniLM-L6-v2 run in NumPy.

The model is a 6-layer BERT (hidden 384, 12 heads, GELU, post-LayerNorm); a sentence's
embedding is the mean of its last hidden states over its tokens, L2-normalised, so the cosine
of two sentences is their dot product (sentence-transformers' own recipe for this model).
A forward pass of a few dozen short items is a handful of matrix products, which NumPy does in
milliseconds; neither torch nor an ONNX export is needed at grading time. tests/test_embedding.py
checks the vectors against transformers' BertModel on the same weights.

Embeddings are cached per text for the life of the process (a run grades many answers against
the same reference items).
"""

from __future__ import annotations

import functools
import json
import threading
from pathlib import Path

import numpy as np

from runner.models import embedder

MAX_TOKENS = 128  # sentence-transformers' max_seq_length for this model: longer text is cut
BATCH = 8  # texts per forward pass, sorted by length


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): BERT's exact GELU without scipy."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return s * y


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


class Encoder:
    """Texts -> unit vectors (float32, 384 wide)."""

    def __init__(self, folder: Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        cfg = json.loads((folder / "config.json").read_text())
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.w = {k: v.astype(np.float32) for k, v in load_file(str(folder / "model.safetensors")).items()}
        # fused Q|K|V: one product per layer instead of three
        for i in range(self.layers):
            p = f"encoder.layer.{i}.attention.self."
            self.w[p + "qkv.weight"] = np.concatenate([self.w[p + n + ".weight"].T for n in ("query", "key", "value")], 1)
            self.w[p + "qkv.bias"] = np.concatenate([self.w[p + n + ".bias"] for n in ("query", "key", "value")])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a vocabulary token
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.dim = self.w["embeddings.word_embeddings.weight"].shape[1]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-norm embeddings, one row per text, computed once per distinct text."""
        with self._lock:
            todo = sorted(dict.fromkeys(t for t in texts if t not in self._cache), key=len)
            for start in range(0, len(todo), BATCH):  # similar lengths together: little padding
                chunk = todo[start:start + BATCH]
                for text, vec in zip(chunk, self._forward(chunk), strict=True):
                    self._cache[text] = vec
            return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def _forward(self, texts: list[str]) -> np.ndarray:
        w = self.w
        enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        n, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        hidden = x.shape[-1]
        hd = hidden // self.heads
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            qkv = x @ w[p + "attention.self.qkv.weight"] + w[p + "attention.self.qkv.bias"]
            q, k, v = (qkv[..., j * hidden:(j + 1) * hidden].reshape(n, length, self.heads, hd).transpose(0, 2, 1, 3)
                       for j in range(3))
            att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd) + bias
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, length, hidden)
            x = _layer_norm(x + ctx @ w[p + "attention.output.dense.weight"].T + w[p + "attention.output.dense.bias"],
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                            self.eps)
            h = _gelu(x @ w[p + "intermediate.dense.weight"].T + w[p + "intermediate.dense.bias"])
            x = _layer_norm(x + h @ w[p + "output.dense.weight"].T + w[p + "output.dense.bias"],
                            w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def encoder() -> Encoder:
    """The process's encoder, loaded (and its weights verified) on first use."""
    return Encoder(embedder.require())


def cosine(a: list[str], b: list[str]) -> np.ndarray:
    """len(a) x len(b) cosine similarities."""
    enc = encoder()
    return enc.encode(a) @ enc.encode(b).T if a and b else np.zeros((len(a), len(b)), np.float32)
