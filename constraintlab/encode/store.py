"""The feature store: one directory per extraction, written in shards, resumable.

Layout
------
``manifest.json``
    ``fingerprint`` (everything that determines the numbers: tool version, full EncodeConfig,
    model name/revision/weights digest, adapter config and weights digest, projection
    kind/seed/k, dataset content hash and size, batch plan digest), plus dataset path, module
    list, statistics and ``complete``.
``features.npy``
    (N, k) float32, memory-mappable; row n is the n-th example given to ``extract``.
``input_factors.npy`` / ``output_factors.npy``
    (N, d) float32; see :class:`constraintlab.encode.gradients.BatchResult`.
``examples.csv``
    One row per example: ``index``, ``line``, ``schema``, ``template``, ``n_tokens``,
    ``n_input_tokens``, ``n_target_tokens``, ``n_truncated``, ``truncated``, ``loss``,
    ``grad_norm``, and one ``energy:<layer>:<module type>`` column per LoRA site (squared norm
    of the example's gradient on that site; the columns sum to ``grad_norm**2``).
``tokens.npz`` / ``tokens.jsonl``
    Per-token profiles of the predicted target tokens (:class:`TokenProfiles`): ``offsets``
    (N + 1), ``nll`` (T,) float32, ``rank`` (T,) int32 (logits strictly above the target's;
    0 = the model's top prediction), ``ids`` (T,) int32; ``tokens.jsonl`` holds one JSON list of
    the tokens' text pieces per example.
``shards/``
    While running: one ``NNNNNN.npz`` per batch, written atomically; removed when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from constraintlab._version import __version__
from constraintlab.errors import StoreMismatchError

MANIFEST = "manifest.json"
SHARDS = "shards"
#: Layout version written in every manifest; a store of another format is never reused.
STORE_FORMAT = "constraintlab.features/2"


def write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _diff(old: object, new: object, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: store has {old!r}, now {new!r}"]


def prepare_dir(out_dir: Path, manifest: dict, *, overwrite: bool) -> bool:
    """Create, reuse or refuse ``out_dir``.

    Returns True when the directory already holds a complete store with the same fingerprint.
    Raises :class:`StoreMismatchError` when it holds anything built otherwise.
    """
    out_dir = Path(out_dir)
    if overwrite and out_dir.exists():
        if (out_dir / MANIFEST).exists() or (out_dir / SHARDS).exists():
            shutil.rmtree(out_dir)
        elif any(out_dir.iterdir()):
            raise StoreMismatchError(
                f"{out_dir} is not a constraintlab feature store; refusing to delete it")
    if out_dir.exists() and any(out_dir.iterdir()):
        path = out_dir / MANIFEST
        if not path.exists():
            raise StoreMismatchError(
                f"{out_dir} exists and is not a constraintlab feature store; choose an empty "
                "or new directory")
        old = json.loads(path.read_text())
        diffs = _diff(old.get("fingerprint"), manifest["fingerprint"])
        if diffs:
            shown = "\n  ".join(diffs[:12])
            raise StoreMismatchError(
                f"{out_dir} holds features built with other settings or data; they are never "
                f"mixed. Use another --out or --overwrite. Differences:\n  {shown}")
        if old.get("complete"):
            return True
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SHARDS).mkdir(exist_ok=True)
    write_json_atomic(out_dir / MANIFEST, manifest)
    return False


def shard_path(out_dir: Path, batch_id: int) -> Path:
    return Path(out_dir) / SHARDS / f"{batch_id:06d}.npz"


def write_shard(out_dir: Path, batch_id: int, arrays: dict[str, np.ndarray]) -> None:
    """Write one batch's arrays atomically (temp file + rename)."""
    final = shard_path(out_dir, batch_id)
    tmp = final.with_name(f".{final.stem}.{os.getpid()}.tmp.npz")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def read_shard(out_dir: Path, batch_id: int) -> dict[str, np.ndarray] | None:
    """The shard's arrays, or None if it is missing or unreadable (then it is recomputed)."""
    path = shard_path(out_dir, batch_id)
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            return {key: z[key] for key in z.files}
    except (OSError, ValueError, EOFError):
        return None


class TokenProfiles:
    """Per-token profiles of the target tokens of N examples (ragged, concatenated).

    Parameters
    ----------
    offsets : (N + 1,) int64
        Tokens of example (row) n are ``offsets[n]:offsets[n + 1]``.
    nll : (T,) float32
        ``-log p(y_t | context)`` of each predicted target token.
    rank : (T,) int32
        Vocabulary entries with a strictly larger logit than the target (0 = top-1).
    ids : (T,) int32
        Token ids.
    lines : list of N str
        One JSON list per example: the text piece of each token.
    """

    NPZ, JSONL = "tokens.npz", "tokens.jsonl"

    def __init__(self, offsets: np.ndarray, nll: np.ndarray, rank: np.ndarray, ids: np.ndarray,
                 lines: list[str]) -> None:
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.nll = np.asarray(nll, dtype=np.float32)
        self.rank = np.asarray(rank, dtype=np.int32)
        self.ids = np.asarray(ids, dtype=np.int32)
        self.lines = lines
        if len(lines) != len(self.offsets) - 1 or self.offsets[-1] != len(self.nll):
            raise StoreMismatchError("token profiles are inconsistent (offsets vs arrays)")

    @classmethod
    def from_lists(cls, nll: list, rank: list, ids: list, pieces: list[list[str]]
                   ) -> TokenProfiles:
        """From one array (or list) per example."""
        counts = [len(x) for x in nll]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

        def cat(parts: list, dtype) -> np.ndarray:
            return (np.concatenate([np.asarray(p, dtype=dtype) for p in parts]) if parts
                    else np.zeros(0, dtype))

        lines = [json.dumps(list(p), ensure_ascii=False) for p in pieces]
        return cls(offsets, cat(nll, np.float32), cat(rank, np.int32), cat(ids, np.int32),
                   lines)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        """(N,) int64 target tokens per example."""
        return np.diff(self.offsets)

    def pieces(self, row: int) -> list[str]:
        """The text pieces of example ``row``'s target tokens."""
        return json.loads(self.lines[row])

    def profile(self, row: int) -> pd.DataFrame:
        """One row per target token of example ``row``: ``token`` (text), ``id``, ``nll``,
        ``rank``."""
        a, b = self.offsets[row], self.offsets[row + 1]
        return pd.DataFrame({"token": self.pieces(row), "id": self.ids[a:b],
                             "nll": self.nll[a:b].astype(np.float64), "rank": self.rank[a:b]})

    def subset(self, rows: np.ndarray | list[int]) -> TokenProfiles:
        """The profiles of ``rows`` only, in that order."""
        rows = [int(r) for r in rows]
        sl = [slice(self.offsets[r], self.offsets[r + 1]) for r in rows]
        return TokenProfiles.from_lists([self.nll[s] for s in sl], [self.rank[s] for s in sl],
                                        [self.ids[s] for s in sl],
                                        [self.pieces(r) for r in rows])

    def save(self, directory: str | os.PathLike, suffix: str = "") -> None:
        """Write ``tokens.npz`` and ``tokens.jsonl`` (each name + ``suffix``)."""
        d = Path(directory)
        with open(d / (self.NPZ + suffix), "wb") as fh:
            np.savez(fh, offsets=self.offsets, nll=self.nll, rank=self.rank, ids=self.ids)
        with open(d / (self.JSONL + suffix), "w", encoding="utf-8") as fh:
            fh.writelines(line + "\n" for line in self.lines)

    @classmethod
    def commit(cls, directory: str | os.PathLike, suffix: str) -> None:
        """Rename files written with ``save(..., suffix)`` to their final names."""
        d = Path(directory)
        for name in (cls.NPZ, cls.JSONL):
            os.replace(d / (name + suffix), d / name)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TokenProfiles | None:
        """The profiles saved in ``directory``, or None when there are none."""
        d = Path(directory)
        if not (d / cls.NPZ).exists() or not (d / cls.JSONL).exists():
            return None
        with np.load(d / cls.NPZ) as z:
            arrays = {k: z[k] for k in ("offsets", "nll", "rank", "ids")}
        # split on "\n" only: JSON escapes it, but U+2028 and friends stay raw in the strings
        lines = (d / cls.JSONL).read_text(encoding="utf-8").split("\n")[:-1]
        return cls(lines=lines, **arrays)


class FeatureStore:
    """A complete feature store, opened read-only.

    Attributes
    ----------
    path : Path
    manifest : dict
    features : (N, k) float32 memmap
    input_factors : (N, d) float32 memmap
    output_factors : (N, d) float32 memmap
    tokens : TokenProfiles
        Per-token NLL, rank, id and text piece of every predicted target token.
    table : pandas.DataFrame
        One row per example (see module docstring for the columns).
    n_params : int
        P, the number of trainable LoRA parameters.
    modules : pandas.DataFrame
        One row per LoRA site: ``name``, ``layer``, ``kind``, ``n_params``, ``column``.
    """

    def __init__(self, path: Path, manifest: dict) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.features = np.load(self.path / "features.npy", mmap_mode="r")
        self.input_factors = np.load(self.path / "input_factors.npy", mmap_mode="r")
        self.output_factors = np.load(self.path / "output_factors.npy", mmap_mode="r")
        self.table = pd.read_csv(self.path / "examples.csv", float_precision="round_trip")
        self.n_params = int(manifest["n_params"])
        self.modules = pd.DataFrame(manifest["modules"])
        self.tokens = TokenProfiles.load(self.path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> FeatureStore:
        """Open a store written by ``extract``; refuses an incomplete one."""
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.exists():
            raise StoreMismatchError(f"{path} is not a constraintlab feature store")
        manifest = json.loads(mpath.read_text())
        if not manifest.get("complete"):
            raise StoreMismatchError(
                f"{path} is an unfinished extraction; run the same extract command again to "
                "resume it")
        return cls(path, manifest)

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def energy(self) -> np.ndarray:
        """(N, M) float64 per-site gradient energy, columns in ``modules`` order."""
        return self.table[list(self.modules["column"])].to_numpy(dtype=np.float64)

    def energy_by(self, level: str = "layer") -> pd.DataFrame:
        """Per-example energy summed by ``"layer"`` or by ``"kind"`` (module type).

        Returns
        -------
        DataFrame (N, groups), index = example ``index``.
        """
        if level not in ("layer", "kind"):
            raise ValueError("level must be 'layer' or 'kind'")
        e = pd.DataFrame(self.energy, columns=pd.Index(self.modules[level]),
                         index=self.table["index"])
        return e.T.groupby(level=0).sum().T


def parse_energy_column(column: str) -> tuple[int, str] | None:
    """``"energy:3:self_attn.q_proj"`` -> ``(3, "self_attn.q_proj")``; None for other columns."""
    m = re.fullmatch(r"energy:(-?\d+):(.+)", column)
    return (int(m.group(1)), m.group(2)) if m else None


def store_key(config, content_hash: str) -> str:
    """Name of the feature store of these encoder settings and data: 16 hex digits.

    ``config`` is an :class:`~constraintlab.encode.EncodeConfig`.
    """
    blob = json.dumps({"config": config.to_dict(), "data": content_hash, "v": __version__},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def open_matching_store(directory: str | os.PathLike, config, content_hash: str,
                        n_examples: int) -> FeatureStore | None:
    """The complete store in ``directory`` if it was built from these settings and data.

    Checked without loading the model (``extract`` itself would load it to compute the full
    fingerprint): same encoder settings, same dataset hash and size, same tool version, and for
    a local model directory the same weights digest. None when anything differs or no complete
    store is there.
    """
    from constraintlab.encode.model import resolve_model, weights_digest

    try:
        store = FeatureStore.open(directory)
    except StoreMismatchError:
        return None
    m = store.manifest
    same = (m.get("format") == STORE_FORMAT and m.get("config") == config.to_dict()
            and m.get("tool_version") == __version__
            and m["dataset"]["content_hash"] == content_hash
            and m["dataset"]["n_examples"] == n_examples)
    if same and Path(resolve_model(config.model)).is_dir():
        same = m["model"].get("weights") == weights_digest(resolve_model(config.model))
    return store if same else None
