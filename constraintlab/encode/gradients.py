r"""Exact per-example LoRA gradients from one batched forward/backward.

For a LoRA site ``y = W x + s B (A x)`` and example i with tokens t, write ``h_t = A x_t`` (r)
and ``g_t = dL/dy_t`` (out). The batch objective is ``L = sum_i l_i`` with ``l_i`` the mean NLL
over example i's target tokens, so ``g_t`` for a token of example i is ``dl_i/dy_t`` (examples
do not interact: right padding, causal attention, padding never attended to). Then

    dl_i/dB = s * sum_{t in i} g_t h_t^T            (out, r)
    dl_i/dA = s * sum_{t in i} (B^T g_t) x_t^T      (r, in)   -- zero when B = 0, skipped

Hooks record ``x_t`` and ``h_t`` (forward hook on ``lora_A``) and ``g_t`` (tensor hook on the
site's output). Every parameter is frozen, so backward computes input-gradients only (no
weight-gradient work); the first LoRA outputs reached are turned into leaves that require
grad, which starts the graph exactly where it is needed. Logits are computed only at positions
that predict a target token (hidden states are sliced before ``lm_head``).

Input dependence: after the backward, one more forward pass without gradients (no hooks, no
graph) scores the same target tokens with the input removed (``Encoded.noinput_ids``, defined in
:mod:`.tokenize`), batch by batch like the rest; only the logits of the target positions are
formed, a chunk at a time. Examples without input (plain text) are not run again: their
no-input NLL is their NLL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from constraintlab.encode.model import LoadedModel
from constraintlab.encode.projection import Projector
from constraintlab.encode.tokenize import Encoded

logger = logging.getLogger(__name__)

HEAD_CHUNK_ELEMENTS = 1 << 25   # logits computed at most 32M at a time (128 MB in float32)


@dataclass
class BatchResult:
    """Per-example outputs of one batch (rows follow the batch order).

    Attributes
    ----------
    features : (b, k) or (b, P) float array
        Projected gradient (``P`` with ``projection="none"``: ``[vec(dA), vec(dB)]`` per site,
        sites in model order, row-major, i.e. the order of ``model.named_parameters()``).
    grad_norm : (b,) float64
        ``||g_i||_2`` of the full LoRA gradient before projection.
    energy : (b, M) float64
        ``||dl_i/dA_m||^2 + ||dl_i/dB_m||^2`` per site m (sums to ``grad_norm**2``).
    loss : (b,) float64
        Mean NLL over target tokens.
    input_factors : (b, d) float
        Final hidden state (after the last norm) averaged over the input (non-target) tokens;
        zeros if the example has none.
    output_factors : (b, d) float
        ``sum_t dl_i/dh_t`` over the positions t that predict a target token, h the final
        hidden state: ``mean_t W_U^T (softmax(z_t) - onehot(y_t))``, where the loss pushes.
    token_nll : (T,) float64
        NLL of every predicted target token, example by example in batch order, positions
        ascending (``token_counts`` per example).
    token_rank : (T,) int64
        Rank of the target token among the model's predictions at its position: how many
        vocabulary entries have a strictly larger logit (0 = the model's top prediction).
    token_counts : (b,) int64
        Predicted target tokens per example.
    token_nll_noinput : (T,) float64
        NLL of the same target tokens with the input removed (``token_nll`` order); NaN for a
        token that is not scored without input (see ``Encoded.noinput_positions``).
    loss_noinput : (b,) float64
        Mean of ``token_nll_noinput`` over each example's scored target tokens.
    """

    features: np.ndarray
    grad_norm: np.ndarray
    energy: np.ndarray
    loss: np.ndarray
    input_factors: np.ndarray
    output_factors: np.ndarray
    token_nll: np.ndarray
    token_rank: np.ndarray
    token_counts: np.ndarray
    token_nll_noinput: np.ndarray
    loss_noinput: np.ndarray


class GradientEngine:
    """Computes :class:`BatchResult` for batches of :class:`Encoded` examples.

    Parameters
    ----------
    loaded : LoadedModel
    projector : Projector or None
        None keeps raw gradients.
    pad_id : int
        Token used for padding (never attended to, never in the loss).
    """

    def __init__(self, loaded: LoadedModel, projector: Projector | None, *, pad_id: int = 0):
        self.loaded = loaded
        self.sites = loaded.sites
        self.projector = projector
        self.pad_id = pad_id
        model = loaded.model
        self.base = model.get_base_model()
        self.body = getattr(self.base, self.base.base_model_prefix, None)
        self.head = self.base.get_output_embeddings()
        p = next(model.parameters())
        self.device, self.model_dtype = p.device, p.dtype
        self.acc_dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
        self.split_head = self._head_is_separable()
        self._saved: dict[int, dict[str, torch.Tensor]] = {}

    # -- model pieces -------------------------------------------------------------------------
    def _head_is_separable(self) -> bool:
        """True when ``logits == lm_head(body(x).last_hidden_state)`` (no softcap etc.)."""
        if self.body is None or self.head is None:
            return False
        vocab = self.head.weight.shape[0]
        ids = torch.arange(7, device=self.device).remainder(vocab)[None]
        with torch.no_grad():
            full = self.base(input_ids=ids).logits
            split = self.head(self.body(input_ids=ids).last_hidden_state)
        ok = full.shape == split.shape and torch.allclose(full, split, rtol=1e-4, atol=1e-5)
        if not ok:
            logger.info("model head is not a plain linear map; computing full logits")
        return bool(ok)

    # -- hooks --------------------------------------------------------------------------------
    def _register(self) -> list:
        handles = []
        for idx, site in enumerate(self.sites):
            saved = self._saved.setdefault(idx, {})

            def a_hook(module, args, output, saved=saved, site=site):
                saved["h"] = output.detach()
                if site.trained:
                    saved["x"] = args[0].detach()

            def out_hook(module, args, output, saved=saved):
                if not output.requires_grad:
                    output = output.detach().requires_grad_(True)

                def grab(grad, saved=saved):
                    saved["g"] = grad.detach()

                output.register_hook(grab)
                return output

            handles.append(site.lora_A.register_forward_hook(a_hook))
            handles.append(site.module.register_forward_hook(out_hook))
        return handles

    # -- one batch ----------------------------------------------------------------------------
    def collate(self, batch: list[Encoded]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded ``input_ids`` (b, L), ``attention_mask`` (b, L), ``target`` (b, L)."""
        length = max(e.n_tokens for e in batch)
        ids = np.full((len(batch), length), self.pad_id, dtype=np.int64)
        attn = np.zeros((len(batch), length), dtype=np.int64)
        tgt = np.zeros((len(batch), length), dtype=bool)
        for i, e in enumerate(batch):
            ids[i, :e.n_tokens] = e.input_ids
            attn[i, :e.n_tokens] = 1
            tgt[i, :e.n_tokens] = e.target_mask
        tgt[:, 0] = False
        dev = self.device
        return (torch.from_numpy(ids).to(dev), torch.from_numpy(attn).to(dev),
                torch.from_numpy(tgt).to(dev))

    def run(self, batch: list[Encoded]) -> BatchResult:
        """Forward/backward one batch and reduce to per-example results."""
        ids, attn, tgt = self.collate(batch)
        b = ids.shape[0]
        # position p predicts token p + 1
        rows, cols = torch.nonzero(tgt[:, 1:], as_tuple=True)
        labels = ids[rows, cols + 1]
        n_tgt = torch.bincount(rows, minlength=b)
        weights = 1.0 / n_tgt[rows].to(self.acc_dtype)
        out_grad: dict[str, torch.Tensor] = {}
        handles = self._register()
        try:
            with torch.enable_grad():
                if self.split_head:
                    hidden = self.body(input_ids=ids, attention_mask=attn).last_hidden_state
                    sel = hidden[rows, cols]
                    nll, rank, grad_sel = self._head_loss(sel.detach(), labels, weights)
                    out_grad["g"] = grad_sel
                    if sel.requires_grad:
                        torch.autograd.backward(sel, grad_sel.to(sel.dtype))
                else:
                    out = self.base(input_ids=ids, attention_mask=attn, output_hidden_states=True)
                    hidden = out.hidden_states[-1]
                    if hidden.requires_grad:
                        hidden.register_hook(
                            lambda g: out_grad.__setitem__("g", g.detach()[rows, cols]))
                    logits = out.logits[rows, cols]
                    nll = torch.nn.functional.cross_entropy(
                        logits.to(self.acc_dtype), labels, reduction="none")
                    (nll * weights).sum().backward()
                    nll = nll.detach()
                    with torch.no_grad():
                        z = logits.detach()
                        rank = self._count_above(z, z.gather(1, labels[:, None]))
        finally:
            for h in handles:
                h.remove()
        with torch.no_grad():
            loss = torch.zeros(b, dtype=self.acc_dtype, device=self.device)
            loss.index_add_(0, rows, nll * weights)
            result = self._reduce(b)
            inp_mask = (attn.bool() & ~tgt_full(batch, ids.shape[1], self.device)).to(
                self.acc_dtype)
            n_inp = inp_mask.sum(1, keepdim=True).clamp(min=1)
            input_factors = torch.einsum("bl,bld->bd", inp_mask,
                                         hidden.detach().to(self.acc_dtype)) / n_inp
            d = hidden.shape[-1]
            output_factors = torch.zeros(b, d, dtype=self.acc_dtype, device=self.device)
            if "g" in out_grad:
                output_factors.index_add_(0, rows, out_grad["g"].to(self.acc_dtype))
        self._saved.clear()
        features, energy = result
        nll_noinput = self.noinput_nll(batch, nll)
        counts = n_tgt.cpu().numpy().astype(np.int64)
        loss_np = loss.cpu().double().numpy()
        loss_noinput = _segment_nanmean(nll_noinput, counts)
        same = np.array([e.noinput_same for e in batch], dtype=bool)
        loss_noinput[same] = loss_np[same]          # no input: the very same number
        return BatchResult(
            features=features.cpu().numpy(),
            grad_norm=energy.sum(1).sqrt().cpu().double().numpy(),
            energy=energy.cpu().double().numpy(),
            loss=loss_np,
            input_factors=input_factors.cpu().numpy(),
            output_factors=output_factors.cpu().numpy(),
            token_nll=nll.cpu().double().numpy(),
            token_rank=rank.cpu().numpy().astype(np.int64),
            token_counts=counts,
            token_nll_noinput=nll_noinput,
            loss_noinput=loss_noinput)

    def noinput_nll(self, batch: list[Encoded], token_nll: torch.Tensor) -> np.ndarray:
        """NLL of every predicted target token with the input removed: one forward pass.

        Parameters
        ----------
        batch : b examples with ``noinput_ids`` (:meth:`Renderer.encode`).
        token_nll : (T,) the with-input NLL in batch order (copied for examples without input).

        Returns
        -------
        (T,) float64, ``token_nll`` order; NaN where a token is not scored without input.
        """
        counts = [e.n_target_tokens for e in batch]
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        out = np.full(int(starts[-1]), np.nan)
        with_input = token_nll.detach().cpu().double().numpy()
        todo: list[int] = []
        for i, e in enumerate(batch):
            if e.noinput_ids is None:
                continue
            if e.noinput_same:
                out[starts[i]:starts[i + 1]] = with_input[starts[i]:starts[i + 1]]
            else:
                todo.append(i)
        if not todo:
            return out
        length = max(len(batch[i].noinput_ids) for i in todo)
        ids = np.full((len(todo), length), self.pad_id, dtype=np.int64)
        attn = np.zeros((len(todo), length), dtype=np.int64)
        rows, cols, dest = [], [], []
        for r, i in enumerate(todo):
            e = batch[i]
            ids[r, :len(e.noinput_ids)] = e.noinput_ids
            attn[r, :len(e.noinput_ids)] = 1
            q = e.noinput_positions
            ok = np.flatnonzero(q >= 1)
            rows.append(np.full(len(ok), r, dtype=np.int64))
            cols.append(q[ok] - 1)                       # position p predicts token p + 1
            dest.append(starts[i] + ok)
        rows_np, cols_np = np.concatenate(rows), np.concatenate(cols)
        labels_np = ids[rows_np, cols_np + 1]
        dev = self.device
        t_ids, t_attn = torch.from_numpy(ids).to(dev), torch.from_numpy(attn).to(dev)
        t_rows, t_cols = torch.from_numpy(rows_np).to(dev), torch.from_numpy(cols_np).to(dev)
        labels = torch.from_numpy(labels_np).to(dev)
        with torch.no_grad():
            if self.split_head:
                hidden = self.body(input_ids=t_ids, attention_mask=t_attn).last_hidden_state
                nll = self._head_nll(hidden[t_rows, t_cols], labels)
            else:
                logits = self.base(input_ids=t_ids, attention_mask=t_attn).logits[t_rows, t_cols]
                nll = torch.nn.functional.cross_entropy(logits.to(self.acc_dtype), labels,
                                                        reduction="none")
        out[np.concatenate(dest)] = nll.cpu().double().numpy()
        return out

    def _head_nll(self, sel: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(n,) NLL of ``labels`` under ``lm_head(sel)`` (sel (n, d)), chunked as
        :meth:`_head_loss` (same arithmetic, no gradient, no rank)."""
        acc = self.acc_dtype
        weight = self._head_weight()
        bias = self.head.bias
        bias = bias.to(acc) if bias is not None else None
        n = sel.shape[0]
        chunk = max(1, HEAD_CHUNK_ELEMENTS // weight.shape[0])
        nll = torch.empty(n, dtype=acc, device=sel.device)
        buf = self._logits_buffer(min(n, chunk), weight.shape[0], sel.device)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            z = buf[:stop - start]
            torch.matmul(sel[start:stop].to(acc), weight.T, out=z)
            if bias is not None:
                z += bias
            picked = z.gather(1, labels[start:stop, None])
            top = z.amax(dim=1, keepdim=True)
            total = z.sub_(top).exp_().sum(dim=1, keepdim=True)
            nll[start:stop] = (top + total.log() - picked)[:, 0]
        return nll

    def _logits_buffer(self, rows: int, vocab: int, device: torch.device) -> torch.Tensor:
        """A reused (>= rows, vocab) scratch for logits (large short-lived CPU allocations
        cost page faults)."""
        buf = getattr(self, "_zbuf", None)
        if buf is None or buf.shape[0] < rows or buf.dtype != self.acc_dtype:
            buf = self._zbuf = torch.empty(rows, vocab, dtype=self.acc_dtype, device=device)
        return buf

    def _head_loss(self, sel: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """NLL and its gradient w.r.t. the selected hidden states, ``chunk`` rows at a time.

        The head is frozen and linear, so ``dL/dh = (softmax(z) - onehot(y)) w W`` is formed
        chunk by chunk: the (n, vocab) logits never exist at once (for a 150k vocabulary they
        would be gigabytes); one logits buffer is reused across chunks and batches (large
        short-lived CPU allocations cost page faults).

        Parameters
        ----------
        sel : (n, d) final hidden states at positions predicting a target token
        labels : (n,) target token ids
        weights : (n,) ``1 / n_target_tokens`` of each row's example

        Returns
        -------
        nll : (n,) per-token NLL; rank : (n,) int64, logits strictly above the target's;
        grad : (n, d) gradient of ``sum(weights * nll)``.
        """
        acc = self.acc_dtype
        weight = self._head_weight()
        bias = self.head.bias
        bias = bias.to(acc) if bias is not None else None
        n = sel.shape[0]
        chunk = max(1, HEAD_CHUNK_ELEMENTS // weight.shape[0])
        nll = torch.empty(n, dtype=acc, device=sel.device)
        rank = torch.empty(n, dtype=torch.int64, device=sel.device)
        grad = torch.empty(n, weight.shape[1], dtype=acc, device=sel.device)
        buf = self._logits_buffer(min(n, chunk), weight.shape[0], sel.device)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            z = buf[:stop - start]
            torch.matmul(sel[start:stop].to(acc), weight.T, out=z)
            if bias is not None:
                z += bias
            lab = labels[start:stop, None]
            picked = z.gather(1, lab)
            rank[start:stop] = self._count_above(z, picked)
            top = z.amax(dim=1, keepdim=True)
            z.sub_(top).exp_()
            total = z.sum(dim=1, keepdim=True)
            z.div_(total)                                       # softmax, in place
            nll[start:stop] = (top + total.log() - picked)[:, 0]
            z.scatter_add_(1, lab, torch.full_like(lab, -1, dtype=acc))
            z.mul_(weights[start:stop, None])
            torch.matmul(z, weight, out=grad[start:stop])
        return nll, rank, grad

    def _count_above(self, z: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
        """(n,) int64: entries of each row of ``z`` (n, V) strictly above ``picked`` (n, 1).

        Counted as ``sum(sign(max(z - picked, 0)))`` in a reused float scratch, a quarter of the
        logits chunk at a time: several times faster than summing a boolean mask, exact (0/1
        sums stay below 2^24 for any vocabulary), and ``z`` is left untouched.
        """
        n, vocab = z.shape
        step = max(1, min(n, HEAD_CHUNK_ELEMENTS // (4 * vocab)))
        buf = getattr(self, "_rank_buf", None)
        if buf is None or buf.shape[0] < step or buf.shape[1] != vocab or buf.dtype != z.dtype:
            buf = self._rank_buf = torch.empty(step, vocab, dtype=z.dtype, device=z.device)
        out = torch.empty(n, dtype=torch.int64, device=z.device)
        for a in range(0, n, step):
            b = min(n, a + step)
            s = buf[:b - a]
            torch.sub(z[a:b], picked[a:b], out=s)
            s.clamp_(min=0).sign_()
            out[a:b] = s.sum(dim=1).round().to(torch.int64)
        return out

    def _head_weight(self) -> torch.Tensor:
        w = self.head.weight
        if w.dtype == self.acc_dtype:
            return w
        if getattr(self, "_head_acc", None) is None:
            self._head_acc = w.detach().to(self.acc_dtype)
        return self._head_acc

    def _reduce(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example gradients per site -> features (b, k | P) and energy (b, M)."""
        acc = self.acc_dtype
        energy = torch.zeros(b, len(self.sites), dtype=acc, device=self.device)
        raw_parts: list[torch.Tensor] = []
        feats = None
        if self.projector is not None:
            feats = torch.zeros(b, self.projector.k, dtype=self.projector.dtype,
                                device=self.device)
        for idx, site in enumerate(self.sites):
            saved = self._saved.get(idx, {})
            g, h = saved.get("g"), saved.get("h")
            s = site.scaling
            if g is None or h is None:   # site not reached by the loss
                d_b = torch.zeros(b, site.out_features, site.r, dtype=acc, device=self.device)
            else:
                d_b = torch.bmm(g.to(acc).transpose(1, 2), h.to(acc)) * s
            d_a = None
            if site.trained and g is not None:
                gb = torch.matmul(g.to(acc), site.lora_B.weight.to(acc))      # (b, L, r)
                d_a = torch.bmm(gb.transpose(1, 2), saved["x"].to(acc)) * s
                energy[:, idx] += d_a.pow(2).sum((1, 2))
            energy[:, idx] += d_b.pow(2).sum((1, 2))
            if feats is None:
                if d_a is None:
                    d_a = torch.zeros(b, site.r, site.in_features, dtype=acc, device=self.device)
                raw_parts += [d_a.reshape(b, -1), d_b.reshape(b, -1)]
            else:
                feats += self.projector.project(d_b, site.name, "B")
                if d_a is not None:
                    feats += self.projector.project(d_a, site.name, "A")
        if feats is None:
            feats = torch.cat(raw_parts, dim=1)
        return feats, energy


def _segment_nanmean(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(b,) mean of the non-NaN entries of each run of ``counts`` values (NaN if none)."""
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    out = np.full(len(counts), np.nan)
    for i in range(len(counts)):
        seg = values[starts[i]:starts[i + 1]]
        seg = seg[~np.isnan(seg)]
        if len(seg):
            out[i] = seg.mean()
    return out


def tgt_full(batch: list[Encoded], length: int, device: torch.device) -> torch.Tensor:
    """(b, L) bool: every target token, including one at position 0."""
    out = np.zeros((len(batch), length), dtype=bool)
    for i, e in enumerate(batch):
        out[i, :e.n_tokens] = e.target_mask
    return torch.from_numpy(out).to(device)
