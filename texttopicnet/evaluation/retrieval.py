"""Cross-modal retrieval in the topic space, as matrix products, chunked for large databases.

The paper ranks by KL(text || image) with both vectors normalised to sum 1. Since
KL(t || i) = sum_k t_k log t_k - sum_k t_k log i_k, a whole distance block is one
matrix product ``T @ log(I).T`` plus a per-text constant: ranking is an inner-product
search. :func:`iter_distance_blocks` yields (query rows x whole database) blocks of a
bounded size, so a database of a million items and thousands of queries fit in memory;
:func:`evaluate_direction` turns them into per-query AP without keeping the full matrix.

Zeros: P rows contribute 0 log 0 = 0 (as ``scipy.stats.entropy``); Q entries are floored
at :data:`EPS` = 1e-10 and Q is renormalised before the log, so a zero in Q where P > 0 costs
a large finite penalty (about 23 nats per unit of P mass) instead of infinity.
``scipy.stats.entropy(p, q_floored_renormalised)`` gives the same numbers.

The image side for any training loss (:func:`recorded_loss`, :func:`image_layer`,
:func:`to_text_space`, :func:`default_score`): a network trained with the paper's sigmoid
cross-entropy is read at ``prob`` (sigmoid of the logits) and ranked by KL after normalising
to sum 1, as the paper; one trained with the cosine or triplet loss is read at ``logits``
mapped by the loss's ``predict`` (L2-normalised) and ranked by cosine, as is one trained with
MSE (raw regression outputs, which may be negative). The loss comes from what the training
stage recorded (the checkpoint's ``loss`` entry, or ``summary.json`` beside an export).

Example::

    from texttopicnet.evaluation.retrieval import kl_divergence_matrix, evaluate_direction
    D = kl_divergence_matrix(text_topics, image_probs)        # D[i, j] = KL(text_i || image_j)
    ap = evaluate_direction(image_probs, text_topics, img_cat, txt_cat, query_is="image")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .metrics import retrieval_ap_rows

EPS = 1e-10
SCORES = ("kl", "cosine")
# Default working-memory budget for one distance block (and its sorted copy).
DEFAULT_BLOCK_BYTES = 256 << 20


def _finite_matrix(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: contains NaN or infinite values")
    return a


def normalise_rows(x, what: str = "rows") -> np.ndarray:
    """Rows scaled to sum 1 (float64). Negative, non-finite or all-zero rows are a ValueError."""
    a = _finite_matrix(x, what)
    if (a < 0).any():
        raise ValueError(f"{what}: contains negative values (expected probabilities)")
    s = a.sum(axis=1, keepdims=True)
    zero = np.flatnonzero(s[:, 0] <= 0)
    if zero.size:
        raise ValueError(f"{what}: {zero.size} row(s) sum to 0 and cannot be normalised (first: row {zero[0]})")
    return a / s


def _log_q(q: np.ndarray) -> np.ndarray:
    q = np.maximum(q, EPS)
    q = q / q.sum(axis=1, keepdims=True)
    return np.log(q)


def _neg_entropy(p: np.ndarray) -> np.ndarray:
    # sum p log p with 0 log 0 = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)


def kl_divergence_matrix(P, Q) -> np.ndarray:
    """Matrix with entry [i, j] = KL(P_i || Q_j), rows of P and Q normalised to sum 1 first.

    Zeros in P contribute 0; Q is floored at :data:`EPS` (then renormalised) before the log.
    Returns float64 (n_P, n_Q); one matrix product.
    """
    p = normalise_rows(P, "P")
    q = normalise_rows(Q, "Q")
    if p.shape[1] != q.shape[1]:
        raise ValueError(f"P and Q have different dimensions: {p.shape[1]} vs {q.shape[1]}")
    d = _neg_entropy(p)[:, None] - p @ _log_q(q).T
    return np.maximum(d, 0.0)  # rounding can give -1e-16 for identical rows


@dataclass
class Prepared:
    """Both sides in the form the chosen score needs, so blocks are one product each."""

    text: np.ndarray  # (n_text, K)
    image: np.ndarray  # (n_image, K)
    text_const: np.ndarray  # per-text additive constant (KL) or zeros
    score: str


def l2_rows(x, what: str = "rows") -> np.ndarray:
    """Rows scaled to unit L2 norm (float64); any sign. Non-finite or all-zero rows are a ValueError."""
    a = _finite_matrix(x, what)
    n = np.linalg.norm(a, axis=1, keepdims=True)
    zero = np.flatnonzero(n[:, 0] <= 0)
    if zero.size:
        raise ValueError(f"{what}: {zero.size} row(s) are all zero and have no direction (first: row {zero[0]})")
    return a / n


def prepare(text_vecs, image_vecs, score: str = "kl", dtype=np.float32) -> Prepared:
    """Normalise once; for KL precompute log(image) and each text's sum t log t.

    KL needs non-negative rows (normalised to sum 1); cosine takes vectors of any sign
    (for non-negative rows, normalising to sum 1 first would not change a cosine).
    ``dtype`` float32 halves memory and doubles GEMM speed; the ranking error it adds
    (~1e-6 relative) is far below the gaps between distinct topic vectors.
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; choose from {SCORES}")
    if score == "kl":
        t = normalise_rows(text_vecs, "text vectors")
        i = normalise_rows(image_vecs, "image vectors")
    else:  # cosine: distance = 1 - cos, rows L2-normalised
        t = l2_rows(text_vecs, "text vectors")
        i = l2_rows(image_vecs, "image vectors")
    if t.shape[1] != i.shape[1]:
        raise ValueError(f"text vectors have {t.shape[1]} dims, image vectors {i.shape[1]}: "
                         "the network's outputs must match the text space's dimensions")
    if score == "kl":
        return Prepared(t.astype(dtype), _log_q(i).astype(dtype), _neg_entropy(t).astype(dtype), score)
    return Prepared(t.astype(dtype), i.astype(dtype), np.ones(len(t), dtype=dtype), score)


def rows_per_block(n_db: int, block_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    # distances + sorted copy + relevance mask: about 9 bytes per float32 entry
    return max(1, int(block_bytes // max(1, 9 * n_db)))


def iter_distance_blocks(prep: Prepared, query_is: str, block_bytes: int = DEFAULT_BLOCK_BYTES
                         ) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (query slice, distances (rows, n_db)) with smaller = better.

    ``query_is="image"``: rows are images, columns texts, entry KL(text || image).
    ``query_is="text"``: rows are texts, columns images.
    """
    if query_is == "image":
        queries, db = prep.image, prep.text
    elif query_is == "text":
        queries, db = prep.text, prep.image
    else:
        raise ValueError("query_is must be 'image' or 'text'")
    step = rows_per_block(db.shape[0], block_bytes)
    for start in range(0, queries.shape[0], step):
        sl = slice(start, min(start + step, queries.shape[0]))
        sim = queries[sl] @ db.T  # (rows, n_db): <t, log i> (KL) or cos
        if query_is == "image":
            d = prep.text_const[None, :] - sim
        else:
            d = prep.text_const[sl, None] - sim
        yield sl, d


def evaluate_direction(prep: Prepared, text_labels, image_labels, query_is: str, top_k: int = 0,
                       block_bytes: int = DEFAULT_BLOCK_BYTES) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-query AP over the full ranking (relevant = same label), block by block.

    Returns (ap (n_queries,), top-k database indices (n_queries, top_k) or None).
    """
    tl, il = np.asarray(text_labels), np.asarray(image_labels)
    q_lab, db_lab = (il, tl) if query_is == "image" else (tl, il)
    n_q = prep.image.shape[0] if query_is == "image" else prep.text.shape[0]
    top_k = min(top_k, len(db_lab))
    ap = np.zeros(n_q, dtype=np.float64)
    top = np.zeros((n_q, top_k), dtype=np.int64) if top_k else None
    for sl, d in iter_distance_blocks(prep, query_is, block_bytes):
        ap[sl] = retrieval_ap_rows(d, q_lab[sl, None] == db_lab[None, :])
        if top_k:
            k = min(top_k, d.shape[1])
            part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(k), (len(d), 1))
            order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
            top[sl, :k] = np.take_along_axis(part, order, axis=1)
    return ap, top


# --- the image side: how a network's outputs map into the text space ------------------------------

def recorded_loss(path, info: dict) -> dict | None:
    """The loss config the training stage recorded for the weights at ``path`` (``info`` from
    ``load_network``): a checkpoint's ``loss`` entry, or for an exported ``.safetensors`` the
    ``summary.json`` beside it when its ``model_sha256`` is the file's. None when nothing records
    one ('random', published and converted files, a user's .pth)."""
    from pathlib import Path

    if info.get("source") in (None, "random"):
        return None
    path = Path(path)
    if path.suffix in (".pt", ".pth"):
        import torch

        try:  # mmap: only the small entries are read, not the weights
            ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - an old-format file: ask the plain way
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - load_network already read it; nothing recorded
                return None
        record = ckpt.get("loss") if isinstance(ckpt, dict) else None
        return record if isinstance(record, dict) and "name" in record else None
    summary = path.parent / "summary.json"
    if path.suffix == ".safetensors" and summary.is_file():
        from ..core import io

        try:
            rec = io.read_json(summary)
        except (OSError, ValueError):
            return None
        if isinstance(rec, dict) and rec.get("model_sha256") == info.get("file_sha256"):
            loss = rec.get("loss")
            return loss if isinstance(loss, dict) and "name" in loss else {"name": "sigmoid_ce"}
    return None


def image_layer(loss_name: str) -> str:
    """The layer retrieval reads: ``prob`` for the paper's sigmoid cross-entropy, else ``logits``."""
    return "prob" if loss_name == "sigmoid_ce" else "logits"


def to_text_space(outputs: np.ndarray, loss_name: str) -> np.ndarray:
    """Activations of :func:`image_layer` -> the vectors compared with the texts: the loss's ``predict``
    (``prob`` is already the sigmoid's, so sigmoid_ce passes through)."""
    if loss_name == "sigmoid_ce":
        return np.asarray(outputs)
    import torch

    from ..training.losses import build_loss

    return build_loss(loss_name).predict(torch.from_numpy(np.asarray(outputs))).numpy()


def vector_space_texts(space, texts, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Texts in a vector space as the network learnt them: the space's embedding through the training
    target transform (``minshift_l2`` / ``minshift_max``, recorded by the labels stage); returns
    (vectors, empty mask). A text without a known word (a zero row) gets the constant row, the
    vector analogue of LDA's uniform distribution, so cosine stays defined."""
    from ..text.spaces import make_targets

    vecs, empty = space.embed(list(texts), return_empty=True)
    out = make_targets(vecs, target)
    out[empty] = 1.0 / np.sqrt(out.shape[1])
    return out, empty


def default_score(loss_name: str) -> str:
    """KL for distributions (sigmoid outputs, the paper's), cosine for vectors (the other losses)."""
    return "kl" if loss_name == "sigmoid_ce" else "cosine"


def evaluate(text_vecs, image_vecs, text_labels, image_labels, category_names: dict | None = None,
             score: str = "kl", top_k: int = 10, block_bytes: int = DEFAULT_BLOCK_BYTES) -> dict:
    """Both directions, per category and the chance level; plain data plus per-query top-k indices.

    ``text_labels`` / ``image_labels`` are category ids; ``category_names`` maps id -> name.
    Keys: img2txt_map, txt2img_map, chance_img2txt, chance_txt2img, per_category, and (not
    JSON) ap_img2txt, ap_txt2img, top_img2txt, top_txt2img.
    """
    from .metrics import chance_ap

    tl, il = np.asarray(text_labels), np.asarray(image_labels)
    if len(tl) != len(text_vecs) or len(il) != len(image_vecs):
        raise ValueError("labels and vectors do not align")
    if len(tl) == 0 or len(il) == 0:
        raise ValueError("retrieval needs at least one text and one image")
    prep = prepare(text_vecs, image_vecs, score=score)
    ap_i2t, top_i2t = evaluate_direction(prep, tl, il, "image", top_k=top_k, block_bytes=block_bytes)
    ap_t2i, top_t2i = evaluate_direction(prep, tl, il, "text", top_k=top_k, block_bytes=block_bytes)
    # chance: expected AP of a random ranking, for each query's own number of relevant items
    n_txt = {c: int((tl == c).sum()) for c in np.unique(np.r_[tl, il])}
    n_img = {c: int((il == c).sum()) for c in np.unique(np.r_[tl, il])}
    chance_i2t = chance_ap([n_txt[c] for c in il], len(tl))
    chance_t2i = chance_ap([n_img[c] for c in tl], len(il))
    names = category_names or {}
    per_cat = {}
    for c in sorted(set(tl.tolist()) | set(il.tolist())):
        name = str(names.get(c, c))
        per_cat[name] = {"img2txt": float(ap_i2t[il == c].mean()) if (il == c).any() else None,
                         "txt2img": float(ap_t2i[tl == c].mean()) if (tl == c).any() else None,
                         "n": int((tl == c).sum()), "n_images": int((il == c).sum())}
    return {"img2txt_map": float(ap_i2t.mean()), "txt2img_map": float(ap_t2i.mean()),
            "chance_img2txt": float(chance_i2t.mean()), "chance_txt2img": float(chance_t2i.mean()),
            "per_category": per_cat, "score": score,
            "ap_img2txt": ap_i2t, "ap_txt2img": ap_t2i, "top_img2txt": top_i2t, "top_txt2img": top_t2i}
