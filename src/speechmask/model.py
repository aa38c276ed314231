"""The causal mask-estimating RNN.

``MaskNet(mag, state) -> (mask, state)``: compressed, normalised magnitude -> stacked LSTM/GRU ->
dropout -> dense -> sigmoid (-> power, see ModelConfig.mask_exponent). Everything is causal
(unidirectional RNN), and the recurrent state is an explicit tuple of tensors, so running the
model frame by frame while carrying the state gives exactly the same masks as running it on the
whole signal.

With ``ModelConfig.lookahead = k > 0`` the RNN sees frames ``t-k .. t`` at step ``t`` and its
output row ``t`` is the mask of frame ``t - k``: the stream is k hops late (16 ms each at hop
256), and the last k feature frames are part of the state. :meth:`MaskNet.offline` gives the
masks aligned with the input frames (what offline enhancement and training use).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from .deepfilter import DeepFilter
from .features import FeatureConfig, compress
from .masks import apply_output

# State: (h, c) for LSTM, (h,) for GRU, each [layers, B, hidden]; with lookahead k > 0 then
# also the last k normalised feature frames [B, k, F].
State = tuple[torch.Tensor, ...]


# Most look-ahead frames a model may have (ModelConfig and the tune search share it): 4 hops =
# 64 ms more streaming latency at 16 kHz, 96 ms in all with the 32 ms frame.
MAX_LOOKAHEAD = 4


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of :class:`MaskNet`. Stored in every checkpoint."""

    # Recurrent cell: "gru" or "lstm" (the baseline's). GRU by default: 3 gates instead of 4 (25 %
    # fewer MACs), and it scored higher at equal budget ("One factor at a time" in
    # docs/experiments.md).
    cell: str = "gru"
    # Hidden units per recurrent layer; 384 ~ 2.2 M parameters with 2 layers on 257 bins.
    hidden: int = 384
    # Recurrent layers; 2 as in the baseline.
    layers: int = 2
    # Dropout between recurrent layers and before the dense layer (training only), in [0, 1).
    dropout: float = 0.2
    # Frequency bins F = n_fft/2 + 1; 257 for n_fft 512.
    n_freqs: int = 257
    # Magnitude compression before normalisation: "log" or "power" (see features.py).
    compression: str = "log"
    # Exponent of "power" compression.
    power: float = 0.3
    # The mask is sigmoid(...) ** mask_exponent, in (0, 4]. 1 while a model is first trained;
    # `speechmask calibrate` can fit it afterwards on held-out pairs: the BCE term pulls the mask
    # toward the IRM, milder than what maximises SNR on seen noise, but an exponent fitted there
    # does not carry to unseen noise (docs/experiments.md), so the shipped model keeps 1.
    # Pointwise, so offline, streaming and ONNX all apply it alike.
    mask_exponent: float = 1.0
    # Future frames the mask of a frame may depend on, 0-4. Each adds one hop (16 ms at 16 kHz)
    # of latency to streaming and (k+1) x n_freqs inputs to the first layer. 0 = strictly causal
    # frame by frame (the baseline's setting).
    lookahead: int = 0
    # Lowest bins given a deep filter (deepfilter.py): complex coefficients over df_order
    # frames, added to the mask's estimate. 0 = mask only (every model before 2026-12-08); 64 =
    # 0-2 kHz at 16 kHz, where voiced speech's harmonics are 3-10 bins apart.
    df_bins: int = 0
    # Frames each deep filter reads, ending with the newest the network has seen (look-ahead
    # L): >= L + 1. 3 with L = 1: frames t-1, t, t+1, as DeepFilterNet's order 5 spans 5 x 10
    # ms; adds 2 x df_order x df_bins outputs (384 x 384 MACs a frame at 64 bins: +7 %).
    df_order: int = 3

    def __post_init__(self) -> None:
        if self.cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {self.cell!r}")
        if self.hidden < 1 or self.layers < 1 or self.n_freqs < 2:
            raise ValueError(
                f"hidden, layers must be >= 1 and n_freqs >= 2, got hidden={self.hidden}, "
                f"layers={self.layers}, n_freqs={self.n_freqs}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.mask_exponent <= 4.0:
            raise ValueError(f"mask_exponent must be in (0, 4], got {self.mask_exponent}")
        if not 0 <= self.lookahead <= MAX_LOOKAHEAD:
            raise ValueError(f"lookahead must be 0-{MAX_LOOKAHEAD} frames, got {self.lookahead}")
        if not 0 <= self.df_bins <= self.n_freqs:
            raise ValueError(f"df_bins must be 0-{self.n_freqs}, got {self.df_bins}")
        if self.df_bins and not self.lookahead < self.df_order <= 8:
            raise ValueError(f"df_order must be {self.lookahead + 1}-8 (look-ahead + 1 or "
                             f"more), got {self.df_order}")
        FeatureConfig(self.compression, self.power)  # validates compression/power

    @property
    def features(self) -> FeatureConfig:
        return FeatureConfig(self.compression, self.power)

    @property
    def output_size(self) -> int:
        """Values per output row: the ``n_freqs`` mask values, then any deep-filter
        coefficients (``2 x df_order x df_bins``, see deepfilter.py)."""
        return self.n_freqs + 2 * self.df_order * self.df_bins


class MaskNet(nn.Module):
    """Causal RNN mask estimator.

    ``forward(mag: [B, T, F], state) -> (mask: [B, T, F] in [0, 1], state)``: row ``t`` of the
    mask belongs to input frame ``t - lookahead`` (see :meth:`offline` for aligned masks). A
    model with a deep filter (``cfg.df_bins > 0``) gives rows of ``cfg.output_size``: the mask,
    then the filter's coefficients in [-1, 1] (:meth:`rows`; :func:`speechmask.masks.apply_output`
    applies both).
    """

    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        rnn_cls = nn.LSTM if cfg.cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            cfg.n_freqs * (cfg.lookahead + 1),
            cfg.hidden,
            num_layers=cfg.layers,
            batch_first=True,
            dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.dense = nn.Linear(cfg.hidden, cfg.n_freqs)
        # Deep-filter coefficients from the same features as the mask; zero at the start, so
        # that a mask model given a filter (with_deep_filter) starts from its own output.
        self.df_head = nn.Linear(cfg.hidden, cfg.output_size - cfg.n_freqs) if cfg.df_bins \
            else None
        if self.df_head is not None:
            nn.init.zeros_(self.df_head.weight)
            nn.init.zeros_(self.df_head.bias)
        # Per-bin statistics of the compressed noisy magnitude, set from training data by
        # set_normalization() and saved in the checkpoint so every path normalises alike.
        self.register_buffer("feat_mean", torch.zeros(cfg.n_freqs))
        self.register_buffer("feat_std", torch.ones(cfg.n_freqs))

    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feat_mean.copy_(mean)
        self.feat_std.copy_(std.clamp_min(1e-3))

    def features(self, mag: torch.Tensor) -> torch.Tensor:
        """Normalised compressed magnitude, ``[B, T, F]``."""
        return (compress(mag, self.cfg.features) - self.feat_mean) / self.feat_std

    @property
    def rnn_state_count(self) -> int:
        """Tensors of recurrent state at the front of :data:`State`: 2 (h, c) or 1 (h)."""
        return 2 if self.cfg.cell == "lstm" else 1

    def initial_state(self, batch: int, device: torch.device | None = None) -> State:
        """All-zero recurrent state for ``batch`` streams."""
        shape = (self.cfg.layers, batch, self.cfg.hidden)
        rnn = tuple(torch.zeros(shape, device=device) for _ in range(self.rnn_state_count))
        if self.cfg.lookahead == 0:
            return rnn
        # Frames "before the start" are the all-zero (= mean) normalised feature.
        return (*rnn, torch.zeros(batch, self.cfg.lookahead, self.cfg.n_freqs, device=device))

    def _context(self, feats: torch.Tensor, history: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``feats: [B, T, F]`` -> (``[B, T, (k+1) F]`` frames t-k..t side by side, oldest first;
        the last k frames ``[B, k, F]`` for the next call)."""
        k, steps = self.cfg.lookahead, feats.shape[1]
        full = torch.cat([history, feats], dim=1)  # [B, k + T, F]
        stacked = torch.cat([full[:, j : j + steps] for j in range(k + 1)], dim=-1)
        return stacked, full[:, steps:]

    def forward(
        self, mag: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.initial_state(mag.shape[0], mag.device)
        feats = self.features(mag)
        if self.cfg.lookahead:
            feats, history = self._context(feats, state[self.rnn_state_count])
        rnn_state = tuple(state[:2]) if self.cfg.cell == "lstm" else state[0]
        out, new_state = self.rnn(feats, rnn_state)
        mask = self.rows(self.dropout(out))
        new_state = tuple(new_state) if self.cfg.cell == "lstm" else (new_state,)
        if self.cfg.lookahead:
            new_state = (*new_state, history)
        return mask, new_state

    @property
    def deep_filter(self) -> DeepFilter | None:
        """The shape of the model's deep filter; None for a mask-only model."""
        return DeepFilter.of(self.cfg)

    def estimate(self, out: torch.Tensor, noisy_spec: torch.Tensor, strength: float = 1.0,
                 floor: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(estimate [B, T, F] complex, mask [B, T, F])`` of output rows ``out`` aligned with
        the frames of ``noisy_spec: [B, T, F]`` (:func:`speechmask.masks.apply_output`)."""
        return apply_output(out, noisy_spec, self.cfg.n_freqs, self.deep_filter, strength,
                            floor)

    def rows(self, out: torch.Tensor) -> torch.Tensor:
        """Output rows ``[..., output_size]`` from the last layer's output ``out: [...,
        hidden]``: the mask ``sigmoid(dense(out)) ** mask_exponent``, then any deep filter's
        coefficients ``tanh(df_head(out))`` (weighted by ``1 - mask`` where they are applied,
        deepfilter.py). Shared by :meth:`forward` and the ONNX one-frame graph, which is why the
        weight is not applied here: in that graph its broadcast took 25 nodes and 11 us of a
        104 us hop (2-core AMD EPYC, 2026-12-07), in numpy after it 1.7 us."""
        mask = torch.sigmoid(self.dense(out))
        if self.cfg.mask_exponent != 1.0:
            mask = mask.pow(self.cfg.mask_exponent)
        if self.df_head is None:
            return mask
        return torch.cat([mask, torch.tanh(self.df_head(out))], dim=-1)

    def offline(self, mag: torch.Tensor) -> torch.Tensor:
        """Masks aligned with the frames of a whole signal: ``mag: [B, T, F] -> [B, T, F]``.

        The last ``lookahead`` frames see silence (all-zero magnitude) as their future, which
        is what a stream sees when it is flushed."""
        return offline_masks(self, mag, self.cfg.lookahead)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def macs_per_frame(self) -> int:
        """Multiply-accumulates per frame (matrix products only; activations ignored)."""
        gates = 4 if self.cfg.cell == "lstm" else 3
        h, f = self.cfg.hidden, self.cfg.n_freqs
        first = f * (self.cfg.lookahead + 1)
        rnn = sum(gates * h * ((first if i == 0 else h) + h) for i in range(self.cfg.layers))
        return rnn + h * self.cfg.output_size


def offline_masks(net: nn.Module, mag: torch.Tensor, lookahead: int) -> torch.Tensor:
    """:meth:`MaskNet.offline` through any wrapper of a MaskNet (DistributedDataParallel in
    training): ``mag: [B, T, F]`` -> masks ``[B, T, F]`` aligned with its frames."""
    if lookahead:
        mag = torch.cat([mag, mag.new_zeros(mag.shape[0], lookahead, mag.shape[2])], dim=1)
    return net(mag)[0][:, lookahead:]


def with_lookahead(model: MaskNet, lookahead: int) -> MaskNet:
    """A copy of ``model`` with more future frames of input, ``lookahead`` in all (used by
    ``train --init MODEL --lookahead K``; look-ahead cannot be lowered this way).

    The old first-layer weights keep the oldest input slots and the new, newest slots start at
    zero, so the copy computes the same masks ``lookahead - model.cfg.lookahead`` frames later,
    given the same history (tested exactly); training then learns what the extra frames add.
    From a stream's start the state sees extra steps of zero history, a difference that fades:
    on the bundled cafe sample, mean |mask change| 0.003 after its first 0.5 s, for 0 -> 1 and
    1 -> 2 alike."""
    have = model.cfg.lookahead
    if have == lookahead:
        return model
    if lookahead < have:
        raise ValueError(f"cannot reduce look-ahead from {have} to {lookahead} frames")
    if model.cfg.df_bins:  # its filters would read other frames than they were trained on
        raise ValueError(f"cannot raise the look-ahead of a model with a deep filter ({have} "
                         "frames); raise it before adding the filter")
    wide = MaskNet(replace(model.cfg, lookahead=lookahead))
    state = dict(model.state_dict())
    old = state["rnn.weight_ih_l0"]  # [gates * hidden, (have + 1) F]
    per_frame = old.shape[1] // (have + 1)
    new = torch.zeros(old.shape[0], per_frame * (lookahead + 1), dtype=old.dtype)
    new[:, : old.shape[1]] = old
    state["rnn.weight_ih_l0"] = new
    wide.load_state_dict(state)
    return wide


def with_hidden(model: MaskNet, hidden: int, seed: int = 0) -> MaskNet:
    """A copy of ``model`` with ``hidden`` units per recurrent layer, as a start for training a
    narrower or wider model against it (``TrainConfig.teacher``) instead of from scratch.

    Narrower: each layer keeps the units whose outgoing weights (into the next layer, or into
    the dense layer) have the largest norm, in their old order. Wider: the old units keep their
    weights and the new ones get random incoming weights (torch's init, ``seed``) and zero
    outgoing ones, so the copy computes exactly the same masks (tested) and training decides
    what the new units add."""
    cfg = model.cfg
    if hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden}")
    old_h, gates = cfg.hidden, 4 if cfg.cell == "lstm" else 3
    with torch.random.fork_rng(devices=[]):  # the caller's random stream stays as it was
        torch.manual_seed(seed)
        resized = MaskNet(replace(cfg, hidden=hidden))
    old, new = model.state_dict(), resized.state_dict()

    # keep[l]: the old unit behind each unit of layer l (-1: a new unit).
    keep = []
    for layer in range(cfg.layers):
        if hidden <= old_h:
            reader = old["dense.weight"] if layer == cfg.layers - 1 else old[
                f"rnn.weight_ih_l{layer + 1}"]  # [*, old_h]: the weights reading the layer
            keep.append(reader.norm(dim=0).argsort(descending=True)[:hidden].sort().values)
        else:
            keep.append(torch.cat([torch.arange(old_h), torch.full((hidden - old_h,), -1)]))

    def resize(name: str, units: torch.Tensor | None, inputs: torch.Tensor | None
               ) -> torch.Tensor:
        """``name``'s tensor with gate rows for ``units`` (None: rows as they are) and columns
        for ``inputs`` (None: columns as they are): kept units' values from ``model``, new
        units' rows as initialised and new units' columns zero (nothing reads them yet)."""
        src, out = old[name], new[name].clone()
        if inputs is not None:
            have = (inputs >= 0).nonzero().squeeze(1)
            cols = src.new_zeros(src.shape[0], len(inputs))
            cols[:, have] = src[:, inputs[have]]
            src = cols
            out[:, inputs < 0] = 0.0
        if units is None:
            return src
        have = (units >= 0).nonzero().squeeze(1)
        out[torch.cat([g * hidden + have for g in range(gates)])] = src[
            torch.cat([g * old_h + units[have] for g in range(gates)])]
        return out

    heads = ("dense", "df_head") if cfg.df_bins else ("dense",)
    state = {name: old[name].clone() for name in ("feat_mean", "feat_std")}
    for head in heads:  # both read the last layer's units
        state[f"{head}.bias"] = old[f"{head}.bias"].clone()
        state[f"{head}.weight"] = resize(f"{head}.weight", None, keep[-1])
    for layer, units in enumerate(keep):
        state[f"rnn.weight_ih_l{layer}"] = resize(f"rnn.weight_ih_l{layer}", units,
                                                  keep[layer - 1] if layer else None)
        state[f"rnn.weight_hh_l{layer}"] = resize(f"rnn.weight_hh_l{layer}", units, units)
        for bias in (f"rnn.bias_ih_l{layer}", f"rnn.bias_hh_l{layer}"):
            state[bias] = resize(bias, units, None)
    resized.load_state_dict(state)
    return resized


def with_deep_filter(model: MaskNet, bins: int, order: int) -> MaskNet:
    """A copy of mask-only ``model`` with a deep filter on its ``bins`` lowest bins over
    ``order`` frames (``train --init MODEL --df-bins 64``): every weight is kept and the new
    coefficient layer starts at zero, so the copy gives exactly the model's output (tested),
    and training decides what the filter adds. ``model`` itself when it has that filter."""
    cfg = model.cfg
    if (cfg.df_bins, cfg.df_order) == (bins, order):
        return model
    if cfg.df_bins:
        raise ValueError(f"the model has a deep filter ({cfg.df_bins} bins x {cfg.df_order} "
                         f"frames) that cannot become {bins} x {order}")
    filtered = MaskNet(replace(cfg, df_bins=bins, df_order=order))
    missing, unexpected = filtered.load_state_dict(model.state_dict(), strict=False)
    assert not unexpected and all(name.startswith("df_head.") for name in missing)
    return filtered


def describe(model: MaskNet, frames_per_second: float) -> dict:
    """Size and cost figures for reports."""
    macs = model.macs_per_frame()
    return {
        **asdict(model.cfg),
        "parameters": model.parameter_count(),
        "macs_per_frame": macs,
        "mmacs_per_second": macs * frames_per_second / 1e6,
    }


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when a GPU is visible, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is available here; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)
