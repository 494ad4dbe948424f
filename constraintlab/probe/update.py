r"""Take a real LoRA update on chosen examples and measure what it does to other examples.

For chosen (training) examples T and probe examples j, with ``l_j`` the mean NLL over j's
target tokens (the encoder's loss and loss masks, :mod:`constraintlab.encode.tokenize`) and
``theta`` the trainable LoRA factors (every A and B):

1. ``g_train = grad (1/|T|) sum_{i in T} l_i`` at ``theta_0``; ``g_j = grad l_j(theta_0)`` exactly,
   one autograd backward per probe example (probe sets are small).
2. ``steps`` full-batch optimiser steps on the mean training loss move ``theta_0 -> theta_S``.
3. Measured per probe example: ``actual_change = l_j(theta_S) - l_j(theta_0)``, next to the
   first-order prediction ``predicted_change = g_j . Delta`` with ``Delta`` the update the
   optimiser makes when its gradient stays ``g_train`` (the linearisation of the design notes):

   - ``sgd``: ``Delta = -lr * steps * g_train``.
   - ``adamw``: Adam's bias-corrected moments of a constant gradient are ``m = g``,
     ``v = g^2``, so every step is ``-lr * g / (|g| + eps)`` (elementwise, a sign-like step;
     zero where ``g = 0``) and decoupled weight decay adds ``-lr * wd * theta_0``:
     ``Delta = -lr * steps * (g_train / (|g_train| + eps) + wd * theta_0)``.

   Spearman and Pearson correlations of predicted vs actual summarise how linear the update is.
4. The target tokens whose log-probability moved most, and the drift of the hidden states:
   per layer, the cosine between the hidden state of each probe token before and after,
   averaged over every probe token.

The LoRA factors are snapshot before and copied back afterwards (also on error), so the model
is bit-identical afterwards; ``save_adapter`` writes the updated adapter first.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from constraintlab._json import plain
from constraintlab.encode import EncodeConfig, plan_batches
from constraintlab.encode.gradients import GradientEngine
from constraintlab.encode.model import LoadedModel, load_model
from constraintlab.encode.tokenize import Encoded, Renderer
from constraintlab.errors import ConfigError, ConstraintlabError
from constraintlab.io import Example, ExampleSet, ReadConfig, read_examples
from constraintlab.probe.config import ProbeConfig
from constraintlab.progress import progress

logger = logging.getLogger(__name__)

TABLE_COLUMNS: tuple[str, ...] = ("loss_before", "loss_after", "actual_change",
                                  "predicted_change", "grad_norm", "n_target_tokens", "input")
_TEXT_CHARS = 80


@dataclass
class ProbeResult:
    """What one probe measured.

    Attributes
    ----------
    table : DataFrame
        One row per probe example, index = ``Example.index`` (name ``index``): ``loss_before``,
        ``loss_after``, ``actual_change`` (after - before; negative = helped),
        ``predicted_change`` (first-order prediction), ``grad_norm`` (``||g_j||``),
        ``n_target_tokens`` and ``input`` (the first 80 characters of the input text).
    summary : dict
        ``spearman``, ``pearson`` (predicted vs actual; None when undefined),
        ``sign_agreement``, ``train_examples``, ``n_train``, ``n_probe``, ``probe_source``,
        ``optimizer`` (torch settings), ``prediction`` (the formula used), ``train_loss``
        (per step, before it, then after the last), ``top_tokens`` (list of dicts: ``example``,
        ``position``, ``token_id``, ``token``, ``p_before``, ``p_after``, ``delta_logp``),
        ``drift`` (list of ``{"layer", "cosine"}``; layer 0 is the embedding output, layer i
        the output of block i - 1, as the model's ``hidden_states``), ``adapter_saved_to``,
        ``config``, ``encode_config`` and ``model``.
    """

    table: pd.DataFrame
    summary: dict[str, Any]

    @property
    def spearman(self) -> float | None:
        return self.summary["spearman"]

    @property
    def pearson(self) -> float | None:
        return self.summary["pearson"]

    def helped(self, n: int = 5) -> pd.DataFrame:
        """The ``n`` probe examples whose loss fell most (most negative ``actual_change``)."""
        return self.table.sort_values("actual_change", kind="stable").head(n)

    def hurt(self, n: int = 5) -> pd.DataFrame:
        """The ``n`` probe examples whose loss rose most (most positive ``actual_change``)."""
        return self.table.sort_values("actual_change", ascending=False, kind="stable").head(n)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the summary plus ``examples`` (the table's rows as dicts)."""
        rows = self.table.reset_index().to_dict(orient="records")
        return plain({**self.summary, "examples": rows})

    def to_json(self, indent: int | None = 2) -> str:
        """Strict JSON (NaN/inf become null)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path``; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path


# -- selection ---------------------------------------------------------------------------------
def parse_ids(text: str) -> list[int]:
    """``"3,17, 42"`` -> ``[3, 17, 42]`` (order kept, duplicates dropped).

    Raises
    ------
    ConfigError
        On an empty list or anything that is not a non-negative integer.
    """
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise ConfigError(f"--examples: {part!r} is not an example index (expected "
                              "0-based record indices such as 3,17,42)")
        if int(part) not in out:
            out.append(int(part))
    if not out:
        raise ConfigError("--examples: the selection is empty; give record indices such as "
                          "3,17,42")
    return out


def zone_members(report: Any, zone: int) -> list[int]:
    """Members (example indices) of zone ``zone`` of an analysis report.

    Read through :meth:`constraintlab.report.report.Report.zone_members`.

    Parameters
    ----------
    report : Report, dict or path
        A :class:`constraintlab.report.report.Report`, its ``report.json`` content, or the
        analyze output directory (or the ``report.json`` file itself; loaded with
        :meth:`Report.load`).
    zone : int
        Zone id as shown in the report (``zones.zones[*].id``).
    """
    from constraintlab.report.report import Report

    if isinstance(report, str | Path):
        try:
            report = Report.load(report)
        except (OSError, ValueError, ConstraintlabError) as err:
            raise ConfigError(f"cannot read the analysis report {report}: {err}; run "
                              "'constraintlab analyze DATA --out DIR' first, or leave out "
                              "--report") from None
    elif isinstance(report, dict):
        report = Report(report, pd.DataFrame(), pd.DataFrame())
    return report.zone_members(zone)


def select(data: ExampleSet, ids: Sequence[int]) -> list[Example]:
    """The examples with these indices (``Example.index``), in the given order."""
    by_index = {ex.index: ex for ex in data}
    missing = [i for i in ids if i not in by_index]
    if missing:
        top = max(by_index) if by_index else -1
        raise ConfigError(
            f"unknown example index {', '.join(map(str, missing))} in {data.source} "
            f"(valid: 0..{top}, {len(by_index)} examples"
            + (f", {len(data.skipped)} records skipped" if data.skipped else "") + ")")
    if not ids:
        raise ConfigError("the selection of examples to train on is empty")
    return [by_index[i] for i in ids]


def sample_rest(data: ExampleSet, exclude: Sequence[int], size: int, seed: int) -> list[Example]:
    """At most ``size`` examples not in ``exclude``, drawn with ``default_rng(seed)``, in file
    order."""
    skip = set(exclude)
    rest = [ex for ex in data if ex.index not in skip]
    if not rest:
        raise ConfigError("no probe examples: every example is selected for training; give a "
                          "probe set with --probe")
    if len(rest) <= size:
        return rest
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(rest), size=size, replace=False))
    return [rest[i] for i in pick]


# -- the probe ---------------------------------------------------------------------------------
class _Runner:
    """Loss, token log-probabilities and hidden states of encoded examples on one model."""

    def __init__(self, loaded: LoadedModel, encode: EncodeConfig) -> None:
        tok = loaded.tokenizer
        self.loaded = loaded
        self.encode = encode
        self.renderer = Renderer(tok, max_length=loaded.max_length(encode.max_length),
                                 use_chat_template=encode.use_chat_template)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.engine = GradientEngine(loaded, None, pad_id=int(pad or 0))
        self.acc = self.engine.acc_dtype
        self.params = [p for s in loaded.sites for p in (s.lora_A.weight, s.lora_B.weight)]

    def nll(self, batch: Sequence[Encoded], *, hidden: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Forward one right-padded batch.

        Returns
        -------
        loss : (b,) per-example mean NLL over target tokens (acc dtype, differentiable)
        logp : (n,) log-probability of every predicted target token, batch rows in order
        hidden_states : tuple of (b, L, d), or None unless ``hidden``
        """
        eng = self.engine
        ids, attn, tgt = eng.collate(list(batch))
        rows, cols = torch.nonzero(tgt[:, 1:], as_tuple=True)
        labels = ids[rows, cols + 1]
        if eng.split_head:
            out = eng.body(input_ids=ids, attention_mask=attn, output_hidden_states=hidden)
            logits = eng.head(out.last_hidden_state[rows, cols])
        else:
            out = eng.base(input_ids=ids, attention_mask=attn, output_hidden_states=hidden)
            logits = out.logits[rows, cols]
        logp = torch.log_softmax(logits.to(self.acc), dim=-1).gather(1, labels[:, None])[:, 0]
        b = ids.shape[0]
        n_tgt = torch.bincount(rows, minlength=b).to(self.acc)
        loss = torch.zeros(b, dtype=self.acc, device=ids.device).index_add(0, rows, -logp)
        return loss / n_tgt, logp, (out.hidden_states if hidden else None)

    def set_params(self, values: Sequence[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, v in zip(self.params, values, strict=True):
                p.copy_(v)


def probe_examples(loaded: LoadedModel, train: Sequence[Example], probe_set: Sequence[Example],
                   config: ProbeConfig | None = None, *, encode: EncodeConfig | None = None,
                   save_adapter: str | Path | None = None, probe_source: str = "") -> ProbeResult:
    """Update the adapter on ``train``, measure ``probe_set``, restore the adapter.

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`constraintlab.encode.model.load_model` with ``encode``. Its parameters are
        bit-identical after the call (LoRA factors copied back, ``requires_grad`` off again).
    train : sequence of Example
        The chosen examples (the update's training batch).
    probe_set : sequence of Example
        Examples to measure (``Example.index`` must be distinct).
    config : ProbeConfig, optional
    encode : EncodeConfig, optional
        The settings ``loaded`` was loaded with (tokenisation: ``max_length``,
        ``use_chat_template``; batches of the training step and of the after-update
        measurement: ``batch_size``, ``max_batch_tokens``). Default ``EncodeConfig()``.
    save_adapter : path, optional
        Write the updated adapter there (``save_pretrained``) before restoring.
    probe_source : str
        Recorded in the summary (where the probe set came from).

    Returns
    -------
    ProbeResult
    """
    config = config if config is not None else ProbeConfig()
    encode = encode if encode is not None else EncodeConfig()
    if not train:
        raise ConfigError("the selection of examples to train on is empty")
    if not probe_set:
        raise ConfigError("the probe set is empty")
    if len({ex.index for ex in probe_set}) != len(probe_set):
        raise ConfigError("probe examples must have distinct indices")
    run = _Runner(loaded, encode)
    train_enc = run.renderer.encode_all(list(train))
    probe_enc = run.renderer.encode_all(list(probe_set))
    params = run.params
    theta0 = [p.detach().clone() for p in params]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        return _probe(run, train, train_enc, probe_set, probe_enc, theta0, config, encode,
                      save_adapter, probe_source)
    finally:
        run.set_params(theta0)
        for p, flag in zip(params, flags, strict=True):
            p.grad = None
            p.requires_grad_(flag)


def _accumulate(run: _Runner, train_enc: list[Encoded], chunks: list[list[int]]) -> float:
    """Fill ``p.grad`` with the gradient of the mean training loss; returns that loss."""
    for p in run.params:
        p.grad = None
    total = 0.0
    n = len(train_enc)
    with torch.enable_grad():
        for chunk in chunks:
            loss, _, _ = run.nll([train_enc[i] for i in chunk])
            (loss.sum() / n).backward()
            total += float(loss.detach().sum())
    for p in run.params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    return total / n


def _update_direction(g: list[torch.Tensor], theta0: list[torch.Tensor], config: ProbeConfig
                      ) -> list[torch.Tensor]:
    """First-order total update ``Delta`` (see the module docstring), float64."""
    scale = -config.lr * config.steps
    out = []
    for gi, ti in zip(g, theta0, strict=True):
        gi = gi.double()
        if config.optimizer == "sgd":
            out.append(scale * gi)
        else:
            step = gi / (gi.abs() + config.eps) + config.weight_decay * ti.double()
            out.append(scale * step)
    return out


def _prediction_text(config: ProbeConfig) -> str:
    if config.optimizer == "sgd":
        return "g_j . (-lr * steps * g_train)"
    return ("g_j . (-lr * steps * (g_train / (|g_train| + eps) + weight_decay * theta_0)); "
            "Adam's step for a constant gradient")


def _probe(run: _Runner, train: Sequence[Example], train_enc: list[Encoded],
           probe_set: Sequence[Example], probe_enc: list[Encoded], theta0: list[torch.Tensor],
           config: ProbeConfig, encode: EncodeConfig, save_adapter: str | Path | None,
           probe_source: str) -> ProbeResult:
    params = run.params
    chunks = plan_batches([e.n_tokens for e in train_enc], encode.batch_size,
                          encode.max_batch_tokens)
    train_loss = [_accumulate(run, train_enc, chunks)]
    g_train = [p.grad.detach().clone() for p in params]
    direction = _update_direction(g_train, theta0, config)

    n = len(probe_enc)
    loss_before, predicted, grad_norm = np.zeros(n), np.zeros(n), np.zeros(n)
    logp_before: list[np.ndarray] = []
    for j in progress(range(n), desc="probe gradients", unit="ex"):
        with torch.enable_grad():
            loss, logp, _ = run.nll([probe_enc[j]])
            grads = torch.autograd.grad(loss[0], params, allow_unused=True)
        used = [(gj.double(), d) for gj, d in zip(grads, direction, strict=True)
                if gj is not None]
        sums = torch.stack([torch.stack([(gj * d).sum(), gj.pow(2).sum()]) for gj, d in used]
                           ).sum(0).cpu()                 # one device sync per example
        loss_before[j], predicted[j] = float(loss[0].detach()), float(sums[0])
        grad_norm[j] = math.sqrt(float(sums[1]))
        logp_before.append(logp.detach().double().cpu().numpy())

    opt_settings = config.optimizer_settings()
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=config.lr)
    else:
        opt = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, eps=config.eps,
                                weight_decay=config.weight_decay)
    for step in progress(range(config.steps), desc="update", unit="step"):
        if step > 0:
            train_loss.append(_accumulate(run, train_enc, chunks))
        opt.step()
    del opt
    for p in params:
        p.grad = None
    theta_s = [p.detach().clone() for p in params]
    with torch.no_grad():
        train_loss.append(float(sum(float(run.nll([train_enc[i] for i in c])[0].sum())
                                    for c in chunks) / len(train_enc)))
    saved = None
    if save_adapter is not None:
        saved = Path(save_adapter)
        run.loaded.model.save_pretrained(str(saved), save_embedding_layers=False)
        logger.info("updated adapter written to %s", saved)

    loss_after = np.zeros(n)
    logp_after: list[np.ndarray] = [np.zeros(0)] * n
    cos_sum: np.ndarray | None = None
    n_tok = 0
    probe_chunks = plan_batches([e.n_tokens for e in probe_enc], encode.batch_size,
                                encode.max_batch_tokens)
    with torch.no_grad():
        for chunk in progress(probe_chunks, desc="probe after", unit="batch"):
            batch = [probe_enc[j] for j in chunk]
            loss, logp, hs_after = run.nll(batch, hidden=True)
            run.set_params(theta0)
            _, _, hs_before = run.nll(batch, hidden=True)
            run.set_params(theta_s)
            loss_after[chunk] = loss.double().cpu().numpy()
            parts = logp.double().cpu().numpy()
            at = 0
            for j, e in zip(chunk, batch, strict=True):
                logp_after[j] = parts[at:at + e.n_target_tokens]
                at += e.n_target_tokens
            real = run.engine.collate(batch)[1].to(run.acc)            # (b, L) attention mask
            cos = np.array([float((torch.nn.functional.cosine_similarity(
                a.to(run.acc), b.to(run.acc), dim=-1, eps=1e-12) * real).sum())
                for a, b in zip(hs_before, hs_after, strict=True)])
            cos_sum = cos if cos_sum is None else cos_sum + cos
            n_tok += sum(e.n_tokens for e in batch)

    actual = loss_after - loss_before
    table = pd.DataFrame({
        "loss_before": loss_before, "loss_after": loss_after, "actual_change": actual,
        "predicted_change": predicted, "grad_norm": grad_norm,
        "n_target_tokens": [e.n_target_tokens for e in probe_enc],
        "input": [ex.input_text[:_TEXT_CHARS] for ex in probe_set],
    }, index=pd.Index([ex.index for ex in probe_set], name="index"))
    spearman, pearson = _correlations(predicted, actual)
    drift = [{"layer": i, "cosine": float(c / n_tok)}
             for i, c in enumerate(cos_sum if cos_sum is not None else [])]
    summary = {
        "spearman": spearman, "pearson": pearson,
        "sign_agreement": float(np.mean(np.sign(predicted) == np.sign(actual))),
        "mean_actual_change": float(actual.mean()),
        "mean_predicted_change": float(predicted.mean()),
        "train_examples": [ex.index for ex in train], "n_train": len(train),
        "n_probe": n, "probe_source": probe_source,
        "optimizer": opt_settings, "prediction": _prediction_text(config),
        "train_loss": train_loss,
        "update_norm": float(math.sqrt(sum(float((a.double() - b.double()).pow(2).sum())
                                           for a, b in zip(theta_s, theta0, strict=True)))),
        "top_tokens": _top_tokens(run, probe_set, probe_enc, logp_before, logp_after,
                                  config.top_tokens),
        "drift": drift,
        "adapter_saved_to": str(saved) if saved is not None else None,
        "config": config.to_dict(), "encode_config": encode.to_dict(),
        "model": run.loaded.info,
    }
    logger.info("probe: %d train, %d probe examples, spearman %s, pearson %s", len(train), n,
                spearman, pearson)
    return ProbeResult(table=table, summary=summary)


def _correlations(predicted: np.ndarray, actual: np.ndarray) -> tuple[float | None, float | None]:
    from scipy.stats import pearsonr, spearmanr

    if len(actual) < 3 or np.ptp(actual) == 0 or np.ptp(predicted) == 0:
        logger.warning("correlation undefined: fewer than 3 probe examples or a constant column")
        return None, None
    return float(spearmanr(predicted, actual).statistic), float(pearsonr(predicted, actual)[0])


def _top_tokens(run: _Runner, probe_set: Sequence[Example], probe_enc: list[Encoded],
                before: list[np.ndarray], after: list[np.ndarray], top: int) -> list[dict]:
    """The ``top`` target tokens with the largest ``|log p_after - log p_before|``."""
    if top == 0:
        return []
    rows = []
    for ex, enc, b, a in zip(probe_set, probe_enc, before, after, strict=True):
        positions = np.nonzero(enc.target_mask[1:])[0] + 1
        for pos, lb, la in zip(positions, b, a, strict=True):
            rows.append((ex.index, int(pos), int(enc.input_ids[pos]), float(lb), float(la)))
    delta = np.array([r[4] - r[3] for r in rows])
    order = np.argsort(-np.abs(delta), kind="stable")[:top]
    tok = run.loaded.tokenizer
    return [{"example": rows[k][0], "position": rows[k][1], "token_id": rows[k][2],
             "token": tok.decode([rows[k][2]]), "p_before": math.exp(rows[k][3]),
             "p_after": math.exp(rows[k][4]), "delta_logp": float(delta[k])} for k in order]


def probe(data: Any, *, examples: Sequence[int] | str | None = None, zone: int | None = None,
          report: Any = None, probe_data: Any = None, config: ProbeConfig | None = None,
          encode: EncodeConfig | None = None, read: ReadConfig | None = None,
          loaded: LoadedModel | None = None, save_adapter: str | Path | None = None
          ) -> ProbeResult:
    """What would training on some examples do to the others? Probe it with a real update.

    Parameters
    ----------
    data : path | list[dict] | datasets.Dataset | ExampleSet
        The dataset (see :func:`constraintlab.io.read_examples`).
    examples : sequence of int or str, optional
        Example indices (``Example.index``) to train on, or ``"3,17,42"``.
    zone : int, optional
        Train on the members of this zone of ``report`` instead.
    report : Report, dict or path, optional
        The analysis report that defines ``zone`` (see :func:`zone_members`).
    probe_data : path or records, optional
        The probe set, read with ``read``; default: up to ``config.probe_size`` examples of the
        rest of ``data``, sampled with ``config.seed``.
    config, encode, read : stage configs, optional
    loaded : LoadedModel, optional
        An already loaded model (loaded with ``encode``); loaded here otherwise.
    save_adapter : path, optional
        Write the updated adapter there; otherwise no weights are written.

    Returns
    -------
    ProbeResult
    """
    config = config if config is not None else ProbeConfig()
    encode = encode if encode is not None else EncodeConfig()
    read = read if read is not None else ReadConfig()
    dataset = data if isinstance(data, ExampleSet) else read_examples(data, read)
    if (examples is None) == (zone is None):
        raise ConfigError("give either examples (record indices) or a zone, not both")
    if zone is not None:
        if report is None:
            raise ConfigError("a zone needs the analysis report that defines it")
        ids = zone_members(report, zone)
    else:
        ids = parse_ids(examples) if isinstance(examples, str) else list(dict.fromkeys(examples))
    train = select(dataset, ids)
    if probe_data is None:
        probe_set = sample_rest(dataset, ids, config.probe_size, config.seed)
        source = (f"{dataset.source}: {len(probe_set)} of the other "
                  f"{len(dataset) - len(train)} examples (seed {config.seed})")
    else:
        probe_set = list(read_examples(probe_data, read).examples)
        source = str(probe_data) if isinstance(probe_data, str | Path) else "<records>"
    if loaded is None:
        loaded = load_model(encode)
    return probe_examples(loaded, train, probe_set, config, encode=encode,
                          save_adapter=save_adapter, probe_source=source)

