r"""Exact per-example LoRA gradients from one batched forward/backward.

For a LoRA site ``y = W x + s B (A x)`` and example i with tokens t, write ``h_t = A x_t`` (r)
and ``g_t = dL/dy_t`` (out). The batch objective is ``L = sum_i l_i`` with ``l_i`` the mean NLL
over example i's target tokens, so ``g_t`` for a token of example i is ``dl_i/dy_t`` (examples
do not interact: right padding, causal attention, padding never attended to). Then

    dl_i/dB = s * sum_{t in i} g_t h_t^T            (out, r)
    dl_i/dA = s * sum_{t in i} (B^T g_t) x_t^T      (r, in)   -- zero when B = 0, skipped

Hooks record ``x_t`` and ``h_t`` (forward hook on ``lora_A``) and receive ``g_t`` (tensor hook
on the site's output); the hook reduces the site at once (one batched GEMM per factor, then the
seeded projection, :meth:`Projector.project`) and drops ``g``, so no site's token gradients
outlive its step of the backward. Every parameter is frozen, so backward computes
input-gradients only (no weight-gradient work); the first LoRA outputs reached are turned into
leaves that require grad, which starts the graph exactly where it is needed. Logits are computed
only at positions that predict a target token (hidden states are sliced before ``lm_head``).

LM head. The logits are one GEMM in the model's dtype per chunk of rows; on CUDA it writes
float32 directly (``torch.mm(..., out_dtype=float32)``: float32 accumulation, no float32 copy
of the head), elsewhere a half-precision product is rounded to the model dtype and widened.
The log-softmax reductions (max, sum of exponentials, NLL, rank) run in float32 (float64 for
float64 models); the probabilities go back to the model dtype for the one GEMM that forms
``dL/dh``, with the target's ``p - 1`` formed in float32 first. Chunks are sized in elements
(``HEAD_CHUNK_ELEMENTS`` on CPU, ``CUDA_HEAD_CHUNK_ELEMENTS`` on a GPU, large enough that the
head weight is read a few times per batch, not per few rows).

Host traffic. Indices are built on the host from the examples (no ``nonzero`` on the device);
every result of a batch is packed on the device into one float64 vector and copied to the host
once (one synchronisation per batch).

Precision (tested in ``tests/test_encode_precision.py`` on a tiny Qwen3 model against a float32
run of the same weights): bfloat16 weights keep the per-example loss within 0.05 nats (mean
absolute difference below 0.02) and the projected features at cosine >= 0.99 per example;
float16 within 0.01 nats and cosine >= 0.999 (measured there: bfloat16 loss within 2.9e-3,
cosine >= 0.9998; float16 4e-4 and 0.999998). Per-example sums, energies and projections are
accumulated in float32 (float64 for float64 models).

Out of memory. :meth:`GradientEngine.run` catches ``torch.OutOfMemoryError`` (or a
RuntimeError saying "out of memory"), empties the allocator's cache, and computes the batch as
two halves (recursively; the results are concatenated in batch order). Per-example results do
not depend on which examples share a batch, so the store is the same as one computed with
smaller batches, up to float rounding (tested by forcing splits through ``fault_hook``).
Later batches at least as large as one that failed are split before they are tried. A single
example that does not fit is retried once with activation checkpointing
(:meth:`GradientEngine.set_checkpointing`) before the error is raised.

Input dependence: after the backward, one more forward pass without gradients (no hooks, no
graph) scores the same target tokens with the input removed (``Encoded.noinput_ids``, defined in
:mod:`.tokenize`), batch by batch like the rest; only the logits of the target positions are
formed, a chunk at a time. Examples without input (plain text) are not run again: their
no-input NLL is their NLL.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from constraintlab.encode.model import LoadedModel
from constraintlab.encode.projection import Projector
from constraintlab.encode.tokenize import Encoded
from constraintlab.errors import ConfigError

logger = logging.getLogger(__name__)

HEAD_CHUNK_ELEMENTS = 1 << 25   # CPU: logits computed at most 32M at a time (128 MB in float32)
CUDA_HEAD_CHUNK_ELEMENTS = 1 << 27   # GPU: 128M (512 MiB in float32): the head weight is read
#                                      once per ~880 rows of a 152k vocabulary


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

    Attributes
    ----------
    fault_hook : callable or None
        Called as ``fault_hook(batch)`` before each attempt at a batch; a test raises
        ``torch.OutOfMemoryError`` from it to force the out-of-memory path.
    n_splits : int
        Batches split in halves after running out of memory (this engine's lifetime).
    failed_tokens : int or None
        Smallest padded size (rows x longest) that ran out of memory; larger batches are split
        before they are tried.
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
        self.on_cuda = self.device.type == "cuda"
        self.head_chunk_elements = (CUDA_HEAD_CHUNK_ELEMENTS if self.on_cuda
                                    else HEAD_CHUNK_ELEMENTS)
        self.fault_hook: Callable[[list[Encoded]], None] | None = None
        self.n_splits = 0
        self.failed_tokens: int | None = None
        self.checkpointing = False
        self._layer_forwards: dict[int, Callable] = {}
        self._mm_out_dtype = self.on_cuda and self.model_dtype in (torch.bfloat16, torch.float16)
        self.split_head = self._head_is_separable()

    # -- model pieces -------------------------------------------------------------------------
    def _head_is_separable(self) -> bool:
        """True when ``logits == lm_head(body(x).last_hidden_state)`` (no softcap etc.)."""
        if self.body is None or self.head is None:
            return False
        vocab = self.head.weight.shape[0]
        ids = torch.arange(7, device=self.device).remainder(vocab)[None]
        with torch.no_grad():
            full = self.base(input_ids=ids, use_cache=False).logits
            split = self.head(self.body(input_ids=ids, use_cache=False).last_hidden_state)
        tol = 1e-4 if self.model_dtype in (torch.float32, torch.float64) else 2e-2
        ok = full.shape == split.shape and torch.allclose(full.float(), split.float(),
                                                          rtol=tol, atol=tol)
        if not ok:
            logger.info("model head is not a plain linear map; computing full logits")
        return bool(ok)

    def _decoder_layers(self) -> list[torch.nn.Module]:
        """The repeated decoder blocks (the longest ModuleList of the model body)."""
        best: list[torch.nn.Module] = []
        for mod in (self.body or self.base).modules():
            if isinstance(mod, torch.nn.ModuleList) and len(mod) > len(best):
                best = list(mod)
        return best

    def set_checkpointing(self, on: bool) -> None:
        """Recompute each decoder block's activations in the backward (non-reentrant
        ``torch.utils.checkpoint``) instead of keeping them; gradients are unchanged."""
        if on == self.checkpointing:
            return
        layers = self._decoder_layers()
        if on:
            for layer in layers:
                orig = layer.forward
                self._layer_forwards[id(layer)] = orig

                def forward(*args, _orig=orig, **kwargs):
                    if not torch.is_grad_enabled():
                        return _orig(*args, **kwargs)
                    return torch.utils.checkpoint.checkpoint(_orig, *args, use_reentrant=False,
                                                             **kwargs)

                layer.forward = forward
        else:
            for layer in layers:
                orig = self._layer_forwards.pop(id(layer), None)
                if orig is not None:
                    del layer.forward            # back to the class's method
        self.checkpointing = on
        logger.info("activation checkpointing %s", "on" if on else "off")

    # -- hooks --------------------------------------------------------------------------------
    def _register(self, sink: dict) -> list:
        handles = []
        for idx, site in enumerate(self.sites):
            saved: dict[str, torch.Tensor] = {}

            def a_hook(module, args, output, saved=saved, site=site):
                saved["h"] = output.detach()
                if site.trained:
                    saved["x"] = args[0].detach()

            def out_hook(module, args, output, saved=saved, site=site, idx=idx):
                if not output.requires_grad:
                    output = output.detach().requires_grad_(True)

                def grab(grad, saved=saved, site=site, idx=idx):
                    self._reduce_site(idx, site, saved, grad.detach(), sink)

                output.register_hook(grab)
                return output

            handles.append(site.lora_A.register_forward_hook(a_hook))
            handles.append(site.module.register_forward_hook(out_hook))
        return handles

    def _reduce_site(self, idx: int, site, saved: dict, g: torch.Tensor, sink: dict) -> None:
        """Per-example factor gradients of one site from its output gradient ``g`` (b, L, out),
        added into ``sink`` (``feats`` (b, k) or ``raw`` parts, ``energy`` (b, M))."""
        acc = self.acc_dtype
        h = saved.get("h")
        if h is None:
            return
        s = site.scaling
        gf = g.to(acc)
        d_b = torch.bmm(gf.transpose(1, 2), h.to(acc)).mul_(s)                # (b, out, r)
        energy = d_b.square().sum((1, 2))
        d_a = None
        if site.trained:
            gb = torch.matmul(gf, site.lora_B.weight.to(acc))                  # (b, L, r)
            d_a = torch.bmm(gb.transpose(1, 2), saved["x"].to(acc)).mul_(s)   # (b, r, in)
            energy += d_a.square().sum((1, 2))
        sink["energy"][:, idx] += energy
        if self.projector is None:
            sink["raw"][idx] = (d_a, d_b)
        else:
            sink["feats"] += self.projector.project(d_b, site.name, "B").to(acc)
            if d_a is not None:
                sink["feats"] += self.projector.project(d_a, site.name, "A").to(acc)
        saved.clear()

    # -- one batch ----------------------------------------------------------------------------
    def collate(self, batch: list[Encoded]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded ``input_ids`` (b, L), ``attention_mask`` (b, L), ``target`` (b, L)."""
        ids, attn, tgt, _ = self._host_arrays(batch)
        dev = self.device
        return (torch.from_numpy(ids).to(dev), torch.from_numpy(attn).to(dev),
                torch.from_numpy(tgt).to(dev))

    def _host_arrays(self, batch: list[Encoded]):
        """(ids, attn, tgt, tgt_full) as NumPy (b, L) arrays; ``tgt`` excludes position 0."""
        length = max(e.n_tokens for e in batch)
        ids = np.full((len(batch), length), self.pad_id, dtype=np.int64)
        attn = np.zeros((len(batch), length), dtype=np.int64)
        full = np.zeros((len(batch), length), dtype=bool)
        for i, e in enumerate(batch):
            ids[i, :e.n_tokens] = e.input_ids
            attn[i, :e.n_tokens] = 1
            full[i, :e.n_tokens] = e.target_mask
        tgt = full.copy()
        tgt[:, 0] = False
        return ids, attn, tgt, full

    def run(self, batch: list[Encoded]) -> BatchResult:
        """Forward/backward one batch and reduce to per-example results.

        Runs out of memory gracefully: the batch is computed as two halves instead (see the
        module docstring); the result is the same, in batch order.
        """
        batch = list(batch)
        tokens = len(batch) * max(e.n_tokens for e in batch)
        if len(batch) > 1 and self.failed_tokens is not None and tokens >= self.failed_tokens:
            return self._split(batch)
        try:
            if self.fault_hook is not None:
                self.fault_hook(batch)
            return self._run(batch)
        except RuntimeError as err:
            if not is_out_of_memory(err):
                raise
            message = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        # out of the except block: the traceback (and the tensors its frames hold) is gone
        self._release()
        if len(batch) == 1:
            if self.checkpointing:
                raise ConfigError(
                    f"one example of {tokens} tokens does not fit in the device memory even "
                    f"with activation checkpointing ({message}); lower --max-length or use a "
                    "larger device")
            logger.warning("one example of %d tokens ran out of memory (%s); retrying with "
                           "activation checkpointing", tokens, message)
            self.set_checkpointing(True)
            return self.run(batch)
        self.failed_tokens = tokens if self.failed_tokens is None else min(
            self.failed_tokens, tokens)
        self.n_splits += 1
        logger.warning("a batch of %d examples (%d padded tokens) ran out of memory (%s); "
                       "computing it in two halves", len(batch), tokens, message)
        return self._split(batch)

    def _split(self, batch: list[Encoded]) -> BatchResult:
        half = len(batch) // 2
        return concat_results([self.run(batch[:half]), self.run(batch[half:])])

    def _release(self) -> None:
        self._scratch.clear()
        if self.on_cuda:
            torch.cuda.empty_cache()

    def _run(self, batch: list[Encoded]) -> BatchResult:
        ids_np, attn_np, tgt_np, full_np = self._host_arrays(batch)
        b = ids_np.shape[0]
        acc, dev = self.acc_dtype, self.device
        # position p predicts token p + 1
        rows_np, cols_np = np.nonzero(tgt_np[:, 1:])
        labels_np = ids_np[rows_np, cols_np + 1]
        counts = np.bincount(rows_np, minlength=b).astype(np.int64)
        weights_np = 1.0 / np.maximum(counts, 1)[rows_np]
        irows_np, icols_np = np.nonzero(attn_np.astype(bool) & ~full_np)   # input tokens
        n_inp = np.maximum(np.bincount(irows_np, minlength=b), 1).astype(np.float64)

        def put(a: np.ndarray, dtype=None) -> torch.Tensor:
            return torch.from_numpy(a).to(dev, dtype=dtype)

        # every host -> device copy first: a copy from pageable memory waits for the stream,
        # so none is left for the middle of the batch
        ids, attn = put(ids_np), put(attn_np)
        rows, cols, labels = put(rows_np), put(cols_np), put(labels_np)
        weights = put(weights_np, acc)
        irows, icols, n_inp_t = put(irows_np), put(icols_np), put(n_inp, acc)
        noinput_in = self._noinput_inputs(batch)
        n_sites = len(self.sites)
        sink: dict = {"energy": torch.zeros(b, n_sites, dtype=acc, device=dev), "raw": {}}
        if self.projector is not None:
            sink["feats"] = torch.zeros(b, self.projector.k, dtype=acc, device=dev)
        out_grad: dict[str, torch.Tensor] = {}
        handles = self._register(sink)
        try:
            with torch.enable_grad():
                if self.split_head:
                    hidden = self.body(input_ids=ids, attention_mask=attn,
                                       use_cache=False).last_hidden_state
                    sel = hidden[rows, cols]
                    nll, rank, grad_sel = self._head(sel.detach(), labels, weights)
                    out_grad["g"] = grad_sel
                    if sel.requires_grad:
                        torch.autograd.backward(sel, grad_sel.to(sel.dtype))
                    del sel
                else:
                    out = self.base(input_ids=ids, attention_mask=attn, use_cache=False,
                                    output_hidden_states=True)
                    hidden = out.hidden_states[-1]
                    if hidden.requires_grad:
                        hidden.register_hook(
                            lambda g: out_grad.__setitem__("g", g.detach()[rows, cols]))
                    logits = out.logits[rows, cols]
                    del out
                    nll = torch.nn.functional.cross_entropy(
                        logits.to(acc), labels, reduction="none")
                    (nll * weights).sum().backward()
                    nll = nll.detach()
                    with torch.no_grad():
                        z = logits.detach().to(acc)
                        rank = self._count_above(z, z.gather(1, labels[:, None]))
                    del logits, z
        finally:
            for h in handles:
                h.remove()
        with torch.no_grad():
            hidden = hidden.detach()
            d = hidden.shape[-1]
            loss = torch.zeros(b, dtype=acc, device=dev).index_add_(0, rows, nll * weights)
            input_factors = torch.zeros(b, d, dtype=acc, device=dev)
            if len(irows_np):
                input_factors.index_add_(0, irows, hidden[irows, icols].to(acc))
            input_factors /= n_inp_t[:, None]
            del hidden
            output_factors = torch.zeros(b, d, dtype=acc, device=dev)
            if "g" in out_grad:
                output_factors.index_add_(0, rows, out_grad.pop("g").to(acc))
            if self.projector is None:
                parts = []
                for idx, site in enumerate(self.sites):
                    d_a, d_b = sink["raw"].get(idx, (None, None))
                    if d_b is None:
                        d_b = torch.zeros(b, site.out_features, site.r, dtype=acc, device=dev)
                    if d_a is None:
                        d_a = torch.zeros(b, site.r, site.in_features, dtype=acc, device=dev)
                    parts += [d_a.reshape(b, -1), d_b.reshape(b, -1)]
                features = torch.cat(parts, dim=1)
            else:
                features = sink["feats"]
            energy = sink["energy"]
            noinput, dest = self._noinput_device(noinput_in)
            # one host copy for every result of the batch
            pieces = [features, energy, loss, input_factors, output_factors, nll, rank]
            if noinput is not None:
                pieces.append(noinput)
            flat = torch.cat([x.reshape(-1).to(torch.float64) for x in pieces]).cpu().numpy()
        sizes = [x.numel() for x in pieces]
        parts_np = np.split(flat, np.cumsum(sizes)[:-1])
        feats_np, energy_np, loss_np, inp_np, outp_np, nll_np, rank_np = parts_np[:7]
        token_nll = nll_np
        nll_noinput = self._noinput_assemble(batch, token_nll,
                                             parts_np[7] if noinput is not None else None, dest)
        loss_noinput = _segment_nanmean(nll_noinput, counts)
        same = np.array([e.noinput_same for e in batch], dtype=bool)
        loss_noinput[same] = loss_np[same]          # no input: the very same number
        energy_np = energy_np.reshape(b, n_sites)
        feat_dtype = np.float64 if acc == torch.float64 else np.float32
        return BatchResult(
            features=feats_np.reshape(b, -1).astype(feat_dtype),
            grad_norm=np.sqrt(energy_np.sum(1)),
            energy=energy_np,
            loss=loss_np,
            input_factors=inp_np.reshape(b, d).astype(feat_dtype),
            output_factors=outp_np.reshape(b, d).astype(feat_dtype),
            token_nll=token_nll,
            token_rank=rank_np.astype(np.int64),
            token_counts=counts,
            token_nll_noinput=nll_noinput,
            loss_noinput=loss_noinput)

    # -- input dependence ---------------------------------------------------------------------
    def _noinput_inputs(self, batch: list[Encoded]) -> tuple | None:
        """Device inputs of the no-input pass of the examples that have a distinct no-input
        sequence: (ids (m, L0), attention mask, rows, cols, labels, dest) with ``dest`` (n,)
        NumPy positions of the scored tokens in the batch's token order; None if none."""
        counts = [e.n_target_tokens for e in batch]
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        todo = [i for i, e in enumerate(batch)
                if e.noinput_ids is not None and not e.noinput_same]
        if not todo:
            return None
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
        moved = [torch.from_numpy(a).to(dev) for a in (ids, attn, rows_np, cols_np, labels_np)]
        return (*moved, np.concatenate(dest))

    def _noinput_device(self, inputs: tuple | None) -> tuple[torch.Tensor | None, np.ndarray]:
        """One no-grad forward of :meth:`_noinput_inputs`.

        Returns
        -------
        nll : (n,) device tensor of the scored tokens' NLL, or None when nothing to run
        dest : (n,) int64 positions of those tokens in the batch's token order
        """
        if inputs is None:
            return None, np.zeros(0, dtype=np.int64)
        t_ids, t_attn, t_rows, t_cols, labels, dest = inputs
        with torch.no_grad():
            if self.split_head:
                hidden = self.body(input_ids=t_ids, attention_mask=t_attn,
                                   use_cache=False).last_hidden_state
                nll = self._head(hidden[t_rows, t_cols], labels, None, rank=False)[0]
            else:
                logits = self.base(input_ids=t_ids, attention_mask=t_attn,
                                   use_cache=False).logits[t_rows, t_cols]
                nll = torch.nn.functional.cross_entropy(logits.to(self.acc_dtype), labels,
                                                        reduction="none")
        return nll, dest

    @staticmethod
    def _noinput_assemble(batch: list[Encoded], token_nll: np.ndarray,
                          scored: np.ndarray | None, dest: np.ndarray) -> np.ndarray:
        """(T,) float64 no-input NLL in ``token_nll`` order; NaN where not scored."""
        counts = [e.n_target_tokens for e in batch]
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        out = np.full(int(starts[-1]), np.nan)
        for i, e in enumerate(batch):
            if e.noinput_ids is not None and e.noinput_same:
                out[starts[i]:starts[i + 1]] = token_nll[starts[i]:starts[i + 1]]
        if scored is not None:
            out[dest] = scored
        return out

    # -- LM head ------------------------------------------------------------------------------
    @property
    def _scratch(self) -> dict:
        buf = self.__dict__.get("_scratch_bufs")
        if buf is None:
            buf = self.__dict__["_scratch_bufs"] = {}
        return buf

    def _buffer(self, name: str, rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
        """A reused (>= rows, cols) scratch (large short-lived CPU allocations cost page
        faults; on CUDA the caching allocator would reuse them anyway)."""
        buf = self._scratch.get(name)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != cols or buf.dtype != dtype:
            self._scratch.pop(name, None)
            buf = self._scratch[name] = torch.empty(rows, cols, dtype=dtype, device=self.device)
        return buf[:rows]

    def head_scratch_bytes(self) -> int:
        """Bytes of the head's per-chunk scratch at the largest chunk (for memory budgets)."""
        vocab = self.head.weight.shape[0] if self.head is not None else 0
        rows = max(1, self.head_chunk_elements // max(vocab, 1))
        acc = torch.finfo(self.acc_dtype).bits // 8
        half = torch.finfo(self.model_dtype).bits // 8 if self.model_dtype != self.acc_dtype \
            else 0
        return rows * vocab * (acc + half + 1)

    def _logits(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(n, V) logits ``x @ weight.T`` in the accumulation dtype (see module docstring)."""
        acc = self.acc_dtype
        n, vocab = x.shape[0], weight.shape[0]
        if self._mm_out_dtype:
            try:
                return torch.mm(x, weight.T, out_dtype=acc)
            except (RuntimeError, TypeError) as err:   # older torch: no out_dtype
                logger.info("torch.mm(out_dtype=) unavailable (%s); widening half logits",
                            str(err).splitlines()[0][:80] if str(err) else type(err).__name__)
                self._mm_out_dtype = False
        z = self._buffer("z", n, vocab, acc)
        if x.dtype == acc and weight.dtype == acc:
            torch.matmul(x, weight.T, out=z)
        else:
            z.copy_(torch.matmul(x, weight.T))
        return z

    def _head(self, sel: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, *,
              rank: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """NLL (and its gradient w.r.t. the selected hidden states), chunk by chunk.

        The head is frozen and linear, so ``dL/dh = (softmax(z) - onehot(y)) w W`` is formed
        chunk by chunk: the (n, vocab) logits never exist at once (for a 150k vocabulary they
        would be gigabytes).

        Parameters
        ----------
        sel : (n, d) final hidden states at positions predicting a target token
        labels : (n,) target token ids
        weights : (n,) ``1 / n_target_tokens`` of each row's example; None: no gradient
        rank : also count the logits strictly above the target's

        Returns
        -------
        nll : (n,) per-token NLL (float32/64); rank : (n,) int64 or None;
        grad : (n, d) gradient of ``sum(weights * nll)`` (float32/64) or None.
        """
        acc = self.acc_dtype
        weight = self.head.weight.detach()
        bias = self.head.bias
        bias = bias.detach().to(acc) if bias is not None else None
        n, vocab = sel.shape[0], weight.shape[0]
        chunk = max(1, self.head_chunk_elements // vocab)
        sel = sel.to(weight.dtype)
        nll = torch.empty(n, dtype=acc, device=sel.device)
        ranks = torch.empty(n, dtype=torch.int64, device=sel.device) if rank else None
        grad = None
        if weights is not None:
            grad = torch.empty(n, weight.shape[1], dtype=acc, device=sel.device)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            z = self._logits(sel[start:stop], weight)
            if bias is not None:
                z += bias
            lab = labels[start:stop, None]
            picked = z.gather(1, lab)
            if ranks is not None:
                ranks[start:stop] = self._count_above(z, picked)
            top = z.amax(dim=1, keepdim=True)
            z.sub_(top)
            if grad is None:
                total = z.exp_().sum(dim=1, keepdim=True)
                nll[start:stop] = (top + total.log() - picked)[:, 0]
                continue
            if weight.dtype == acc:
                e = z.exp_()
                total = e.sum(dim=1, keepdim=True)
            else:
                e = self._buffer("e", stop - start, vocab, weight.dtype)
                torch.exp(z, out=e)
                total = e.sum(dim=1, keepdim=True, dtype=acc)
            nll[start:stop] = (top + total.log() - picked)[:, 0]
            # the target's entry becomes (p - 1) * total, formed in float32
            e_lab = (picked - top).exp()
            e.scatter_(1, lab, (e_lab - total).to(e.dtype))
            scale = weights[start:stop, None] / total
            grad[start:stop] = torch.matmul(e, weight).to(acc).mul_(scale)
        return nll, ranks, grad

    def _count_above(self, z: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
        """(n,) int64: entries of each row of ``z`` (n, V) strictly above ``picked`` (n, 1).

        On CPU counted as ``sum(sign(max(z - picked, 0)))`` in a reused float scratch, a quarter
        of the logits chunk at a time: several times faster than summing a boolean mask, exact
        (0/1 sums stay below 2^24 for any vocabulary), and ``z`` is left untouched. On a GPU
        one comparison and sum.
        """
        if self.on_cuda:
            return (z > picked).sum(dim=1)
        n, vocab = z.shape
        step = max(1, min(n, HEAD_CHUNK_ELEMENTS // (4 * vocab)))
        buf = self._buffer("rank", step, vocab, z.dtype)
        out = torch.empty(n, dtype=torch.int64, device=z.device)
        for a in range(0, n, step):
            b = min(n, a + step)
            s = buf[:b - a]
            torch.sub(z[a:b], picked[a:b], out=s)
            s.clamp_(min=0).sign_()
            out[a:b] = s.sum(dim=1).round().to(torch.int64)
        return out


def is_out_of_memory(err: BaseException) -> bool:
    """True for ``torch.OutOfMemoryError`` and a RuntimeError saying "out of memory"."""
    oom = getattr(torch, "OutOfMemoryError", None)
    if oom is not None and isinstance(err, oom):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def concat_results(parts: list[BatchResult]) -> BatchResult:
    """One :class:`BatchResult` of consecutive parts of a batch (rows and tokens in order)."""
    fields = BatchResult.__dataclass_fields__
    return BatchResult(**{name: np.concatenate([getattr(p, name) for p in parts], axis=0)
                          for name in fields})


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
