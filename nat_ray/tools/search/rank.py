"""The paper's two ranking stages over a query's candidates, each batched over many queries at once.

- ``EmbeddingFilter``: sentence embeddings (all-mpnet-base-v2 in the paper; all-MiniLM-L6-v2 is the small default for
  tests), keep the ``keep`` candidates nearest to the query by cosine similarity.
- ``DPRReranker``: a ``transformers.DPRReader`` scores each (question, title, text) with its relevance logit; keep
  the ``keep`` best.
Both load from a local folder (or a prepared model name) once, and use a GPU when there is one.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from nat_ray.errors import InputError
from nat_ray.tools.search.base import Passage


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_search_model(model: str, what: str) -> Path:
    from nat_ray.models import resolve_model_path

    try:
        return resolve_model_path(model)
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from None


def top_by_score(candidates: list[list[Passage]], scores: list[float], keep: int) -> list[list[Passage]]:
    """Each query's candidates ordered by their scores (``scores`` runs over all candidates, query after query),
    highest first, the first ``keep``; the sort is stable, so the backend's order breaks ties."""
    out, start = [], 0
    for cands in candidates:
        s = scores[start : start + len(cands)]
        start += len(cands)
        order = sorted(range(len(cands)), key=lambda j: -s[j])
        out.append([cands[j] for j in order[:keep]])
    return out


class EmbeddingFilter:
    """``memo``: passage embeddings kept (least recently used out) — in a rollout the same passages come back for
    many queries (a question's samples and temperatures, its follow-up searches), and encoding them is the cost."""

    def __init__(
        self, model: str, keep: int, device: str | None = None, batch_size: int = 64, memo: int = 20_000
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self.path = resolve_search_model(model, "tools.search.embed_model")
        self.keep = keep
        self.batch_size = batch_size
        self.device = device or default_device()
        self.model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
        self._torch = torch
        self.memo_size = memo
        self._memo: OrderedDict[str, Any] = OrderedDict()
        self.encoded = self.reused = 0

    def _passages(self, texts: list[str]):
        """Embeddings of ``texts`` (one row each), encoding only those not in the memo, each once."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
        fresh = {}
        if missing:
            vecs = self.model.encode(
                missing, batch_size=self.batch_size, normalize_embeddings=True, convert_to_tensor=True
            )
            fresh = dict(zip(missing, vecs, strict=True))
        self.encoded += len(missing)
        self.reused += len(texts) - len(missing)
        rows = []
        for t in texts:
            if t in fresh:
                rows.append(fresh[t])
            else:
                self._memo.move_to_end(t)
                rows.append(self._memo[t])
        if self.memo_size:
            self._memo.update(fresh)
            while len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)
        return self._torch.stack(rows)

    def select(self, queries: list[str], candidates: list[list[Passage]]) -> list[list[Passage]]:
        """Per query, its candidates ordered by cosine similarity to it, the first ``keep``: one encode call for all
        queries and one for all candidates, so concurrent queries share the model's batches."""
        flat = [p.render() for cands in candidates for p in cands]
        if not flat:
            return [[] for _ in queries]
        q = self.model.encode(queries, batch_size=self.batch_size, normalize_embeddings=True, convert_to_tensor=True)
        c = self._passages(flat)
        owner = [i for i, cands in enumerate(candidates) for _ in cands]  # the query each candidate belongs to
        sims = (c * q[owner]).sum(dim=1).tolist()
        return top_by_score(candidates, sims, self.keep)


class DPRReranker:
    def __init__(self, model: str, keep: int, device: str | None = None, max_length: int = 256) -> None:
        import torch
        from transformers import AutoConfig, DPRReader, DPRReaderTokenizerFast

        self.path = resolve_search_model(model, "tools.search.rerank_model")
        self.keep = keep
        self.max_length = max_length
        self.device = device or default_device()
        try:
            # DPRReader would load any BERT folder, silently re-initialising its reader head: check the type first
            model_type = AutoConfig.from_pretrained(str(self.path), local_files_only=True).model_type
            if model_type != "dpr":
                raise ValueError(f"its config is model_type {model_type!r}, not 'dpr'")
            self.tokenizer = DPRReaderTokenizerFast.from_pretrained(str(self.path), local_files_only=True)
            self.model = DPRReader.from_pretrained(str(self.path), local_files_only=True).to(self.device).eval()
        except (OSError, ValueError) as exc:
            raise InputError(f"tools.search.rerank_model: {self.path} is not a DPR reader folder: {exc}") from None
        self._torch = torch

    def select(self, queries: list[str], candidates: list[list[Passage]]) -> list[list[Passage]]:
        pairs = [(q, p) for q, cands in zip(queries, candidates, strict=True) for p in cands]
        if not pairs:
            return [[] for _ in queries]
        # the reader's own input layout, [CLS] question [SEP] title [SEP] text; one relevance logit per row
        enc = self.tokenizer(
            questions=[q for q, _ in pairs],
            titles=[p.title for _, p in pairs],
            texts=[p.text for _, p in pairs],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        with self._torch.inference_mode():
            logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).relevance_logits
        return top_by_score(candidates, logits.float().cpu().tolist(), self.keep)
