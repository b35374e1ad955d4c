"""MLPs, and the batched ensemble layer that holds E networks in one weight tensor."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch._C import _functorch
from torch._functorch.pyfunctorch import temporarily_pop_interpreter_stack

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}: choose from {', '.join(ACTIVATIONS)}") from None


def _seed_stacked(tensor: torch.Tensor, level: int, seeds: int) -> torch.Tensor:
    """The ``[S, ...]`` tensor under a seed group's vmap level (an unbatched one repeated)."""
    if _functorch.maybe_get_level(tensor) != level:
        return tensor.unsqueeze(0).expand(seeds, *tensor.shape)
    value, dim = _functorch._unwrap_batched(tensor, level)
    return value.movedim(dim, 0)


def stacked_baddbmm(bias: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``baddbmm`` of ``[E, ...]`` operands when the weight is stacked over seeds (a seed group's vmap).

    vmap's own rule splits it into a strided matmul and a separate bias add; here the seeds fold
    into the batch as one contiguous ``[S * E]`` baddbmm, about 1.5x faster on CPU.
    """
    level = _functorch.maybe_get_level(weight)
    seeds = _functorch._unwrap_batched(weight, level)[0].shape[0]
    with temporarily_pop_interpreter_stack():
        b, v, w = (_seed_stacked(t, level, seeds) for t in (bias, x, weight))
        out = torch.baddbmm(b.flatten(0, 1), v.flatten(0, 1), w.flatten(0, 1))
        return _functorch._add_batch_dim(out.unflatten(0, (seeds, -1)), 0, level)


def in_float32(x: torch.Tensor) -> contextlib.AbstractContextManager | None:
    """Under mixed precision (``torch.autocast``, see ``offrl.nn.precision``): a context that turns it off,
    for an output layer whose values, logits or actions keep float32's precision; None otherwise."""
    device = x.device.type
    return torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else None


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state dict) with the seed-group fast path of ``stacked_baddbmm``.

    ``float32_output``: under mixed precision this layer still computes in float32 (an output layer)."""

    float32_output = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.float32_output and (full := in_float32(x)) is not None:
            with full:
                return self.forward(x.float())
        if not _functorch.is_batchedtensor(self.weight):
            return super().forward(x)
        level = _functorch.maybe_get_level(self.weight)
        seeds = _functorch._unwrap_batched(self.weight, level)[0].shape[0]
        with temporarily_pop_interpreter_stack():
            v, w, b = (_seed_stacked(t, level, seeds) for t in (x, self.weight, self.bias))
            rows = v.reshape(seeds, -1, v.shape[-1])
            out = torch.baddbmm(b.unsqueeze(1), rows, w.transpose(1, 2))
            return _functorch._add_batch_dim(out.view(*v.shape[:-1], -1), 0, level)


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask on CPU comes from 16-bit lanes of 64-bit random words.

    Same scaling (``1 / (1 - p)``) and state (none). On CPU torch draws one 64-bit word about as fast
    as one float from ``torch.rand`` and ``bernoulli_`` twice as slowly, and dropout masks were a
    quarter of a Decision Transformer step: here each word is four 16-bit lanes (a view, no shifts),
    and an element is dropped where its lane falls below ``p`` of the lane range. ``p`` is thereby
    rounded to a multiple of 2^-16 (0.1 drops with probability 0.100006). Other devices use torch's
    own kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        if self.p == 1.0:
            return x * 0.0
        if _functorch.is_batchedtensor(x):  # batched seeds: random_ on a fresh tensor would give all one mask
            return x * ((torch.rand_like(x) >= self.p).to(x.dtype) * (1.0 / (1.0 - self.p)))
        count = x.numel()
        words = torch.empty((count + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
        lanes = words.view(torch.int16)[:count].view(x.shape)  # uniform over [-2^15, 2^15)
        dropped = min(round(self.p * 2**16), 2**16 - 1)
        return x.mul(1.0 / (1.0 - self.p)).mul_(lanes >= dropped - 2**15)


def with_fast_dropout(module: nn.Module) -> nn.Module:
    """``module`` with every ``nn.Dropout`` inside it (torch's transformer layers included) made a ``Dropout``."""
    for name, child in module.named_children():
        if type(child) is nn.Dropout:
            setattr(module, name, Dropout(child.p))
        else:
            with_fast_dropout(child)
    return module


class TransformerBlock(nn.TransformerEncoderLayer):
    """A GPT-2 pre-norm block: torch's encoder layer (the same parameters, names and initialisation, so
    checkpoints are unchanged) with its attention written out as one projection, two batched products and
    a softmax. torch's attention drew its dropout with ``bernoulli_``, moved batch-first tensors to
    sequence-first and back, and has no vmap batching rule (batched seeds ran it once per seed); this one
    uses offrl's ``Dropout`` on the attention weights and batches under vmap. Takes the additive
    attention mask of :func:`causal_attention_bias` (``[B * heads, T, T]``) as ``src_mask``."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__(embed_dim, num_heads, 4 * embed_dim, dropout, activation="gelu", batch_first=True, norm_first=True)
        self.dropout = nn.Identity()  # linear2(dropout(gelu(linear1(x)))) -> linear2(gelu(linear1(x))), as GPT-2
        self.attention_dropout = Dropout(dropout)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):  # noqa: ARG002 (the mask says it)
        if src_key_padding_mask is not None:
            raise ValueError("TransformerBlock takes padding in the additive src_mask, not src_key_padding_mask")
        x = src + self.dropout1(self.attention(self.norm1(src), src_mask))
        return x + self.dropout2(self.linear2(self.activation(self.linear1(self.norm2(x)))))

    def attention(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = x.shape
        heads = self.self_attn.num_heads
        size = width // heads
        qkv = F.linear(x, self.self_attn.in_proj_weight, self.self_attn.in_proj_bias)  # [B, T, 3 * width]
        q, k, v = qkv.view(batch, length, 3, heads, size).permute(2, 0, 3, 1, 4).reshape(3, batch * heads, length, size)
        scale = 1.0 / math.sqrt(size)
        if bias is None:
            scores = torch.bmm(q, k.transpose(1, 2)) * scale
        else:
            scores = torch.baddbmm(bias, q, k.transpose(1, 2), alpha=scale)
        weights = self.attention_dropout(torch.softmax(scores, dim=-1))
        out = torch.bmm(weights, v).view(batch, heads, length, size).transpose(1, 2).reshape(batch, length, width)
        return self.self_attn.out_proj(out)


def transformer_blocks(embed_dim: int, num_heads: int, num_layers: int, dropout: float) -> nn.TransformerEncoder:
    """GPT-2 pre-norm blocks (GELU, 4x feed-forward width, :class:`TransformerBlock`) with offrl's ``Dropout``.

    Dropout as GPT-2 (and the Decision Transformer, CORL and robomimic code) places it: on the
    attention weights and on each residual branch, not on the feed-forward hidden layer, where
    torch's ``TransformerEncoderLayer`` adds one more.
    """
    blocks = nn.TransformerEncoder(TransformerBlock(embed_dim, num_heads, dropout), num_layers, enable_nested_tensor=False)
    return with_fast_dropout(blocks)


class MLP(nn.Sequential):
    """Linear layers with an activation between them (and optional LayerNorm / dropout after each hidden layer).

    ``init`` picks the initialization: ``"default"`` (PyTorch's), ``"orthogonal"``
    (gain sqrt(2) for hidden layers, as CQL's reference code), or ``"edac"`` (bias
    0.1 in hidden layers, as EDAC and ReBRAC). ``last_layer_scale`` re-draws the
    output layer uniformly in [-scale, scale] (orthogonal with that gain for
    ``"orthogonal"``) so initial outputs are near zero.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        *,
        activation_name: str = "relu",
        layer_norm: bool = False,
        dropout: float = 0.0,
        output_activation: str | None = None,
        init: str = "default",
        last_layer_scale: float | None = None,
    ) -> None:
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_dims:
            layers.append(Linear(width, hidden))
            layers.append(activation(activation_name))
            if layer_norm:  # after the activation, as RLPD and ReBRAC (and EnsembleMLP) place it
                layers.append(nn.LayerNorm(hidden))
            if dropout > 0:
                layers.append(Dropout(dropout))
            width = hidden
        layers.append(output_layer(width, out_dim))
        if output_activation is not None:
            layers.append(activation(output_activation))
        super().__init__(*layers)
        linears = [m for m in self if isinstance(m, nn.Linear)]
        initialize(
            [(m.weight.T.unsqueeze(0), m.bias.unsqueeze(0)) for m in linears], init=init, last_layer_scale=last_layer_scale
        )


def output_layer(in_dim: int, out_dim: int) -> Linear:
    """A network's last layer: it computes in float32 under mixed precision."""
    layer = Linear(in_dim, out_dim)
    layer.float32_output = True
    return layer


@torch.no_grad()
def initialize(layers: list[tuple[torch.Tensor, torch.Tensor]], *, init: str, last_layer_scale: float | None) -> None:
    """Initialize ``[E, in, out]`` weights and ``[E, 1|-, out]`` biases in place (views of nn.Linear work too)."""
    if init not in ("default", "orthogonal", "edac"):
        raise ValueError(f"unknown init {init!r}: choose default, orthogonal or edac")
    for index, (weight, bias) in enumerate(layers):
        last = index == len(layers) - 1
        if init == "orthogonal":
            gain = last_layer_scale if last and last_layer_scale is not None else (math.sqrt(2) if not last else 1.0)
            for member in range(weight.shape[0]):
                matrix = torch.empty(weight.shape[2], weight.shape[1])
                nn.init.orthogonal_(matrix, gain=gain)
                weight[member].copy_(matrix.T)
            bias.zero_()
        elif last and last_layer_scale is not None:
            weight.uniform_(-last_layer_scale, last_layer_scale)
            bias.uniform_(-last_layer_scale, last_layer_scale)
        elif init == "edac" and not last:
            bias.fill_(0.1)


class EnsembleLinear(nn.Module):
    """E independent linear layers as one ``[E, in, out]`` weight: one batched matmul for all members.

    Input ``[E, B, in]`` gives ``[E, B, out]``. Each member is initialised as
    ``nn.Linear`` would be. ``float32_output`` as ``Linear``'s.
    """

    float32_output = False

    def __init__(self, ensemble_size: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.ensemble_size, self.in_features, self.out_features = ensemble_size, in_features, out_features
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        bound = 1.0 / math.sqrt(in_features)
        # nn.Linear's default init: kaiming_uniform(a=sqrt(5)) on the weight is U(-bound, bound), bias likewise.
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, members: slice | None = None, frozen: bool = False) -> torch.Tensor:
        if self.float32_output and (full := in_float32(x)) is not None:
            with full:
                return self.forward(x.float(), members, frozen)
        bias, weight = (self.bias, self.weight) if members is None else (self.bias[members], self.weight[members])
        if frozen:  # gradients reach x only: the backward skips the weight and bias products
            bias, weight = bias.detach(), weight.detach()
        if _functorch.is_batchedtensor(weight):
            return stacked_baddbmm(bias, x, weight)
        return torch.baddbmm(bias, x, weight)

    def extra_repr(self) -> str:
        return f"ensemble_size={self.ensemble_size}, in_features={self.in_features}, out_features={self.out_features}"


class EnsembleMLP(nn.Module):
    """An MLP per member, all members evaluated together. Input ``[B, in]`` (shared) or ``[E, B, in]``."""

    def __init__(
        self,
        ensemble_size: int,
        in_dim: int,
        hidden_dims: Sequence[int],
        out_dim: int,
        *,
        activation_name: str = "relu",
        layer_norm: bool = False,
        init: str = "default",
        last_layer_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        widths = [in_dim, *hidden_dims, out_dim]
        self.layers = nn.ModuleList(EnsembleLinear(ensemble_size, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.layers[-1].float32_output = True
        self.norms = nn.ModuleList(nn.LayerNorm(w) for w in hidden_dims) if layer_norm else None
        self.act = activation(activation_name)
        initialize([(layer.weight, layer.bias) for layer in self.layers], init=init, last_layer_scale=last_layer_scale)

    def forward(self, x: torch.Tensor, members: slice | None = None, frozen: bool = False) -> torch.Tensor:
        """``frozen``: the output is differentiable in ``x`` only (an actor's loss through a critic), so the
        backward computes no weight gradients, which that loss's optimizer would discard."""
        count = self.ensemble_size if members is None else len(range(*members.indices(self.ensemble_size)))
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(count, *x.shape)
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x, members, frozen)
            if index < last:
                x = self.act(x)
                if self.norms is not None:  # LayerNorm after the activation, as RLPD and ReBRAC place it
                    x = _layer_norm(self.norms[index], x, frozen)
        return x


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor, frozen: bool) -> torch.Tensor:
    if not frozen:
        return norm(x)
    return F.layer_norm(x, norm.normalized_shape, norm.weight.detach(), norm.bias.detach(), norm.eps)


def causal_attention_bias(mask: torch.Tensor, num_heads: int, *, tokens_per_step: int = 1) -> torch.Tensor:
    """The additive attention mask of a causal transformer over ``tokens_per_step`` tokens per step
    (``mask`` ``[B, K]``: real steps): each token sees itself and earlier tokens of real steps, shaped
    ``[B * heads, T, T]`` for ``nn.TransformerEncoder``. A large finite negative (not -inf), as GPT-2's
    mask in Decision Transformer's reference code. A padded token also sees itself: no row is fully masked,
    which torch's fused inference path turns into NaN for the whole batch (its output is never used)."""
    steps = mask.repeat_interleave(tokens_per_step, dim=1)  # [B, T]
    size = steps.shape[1]
    causal = torch.ones(size, size, dtype=torch.bool, device=mask.device).tril()
    itself = torch.eye(size, dtype=torch.bool, device=mask.device)
    allowed = causal[None] & (steps[:, None, :] | itself)
    bias = torch.zeros(allowed.shape, device=mask.device).masked_fill(~allowed, -1e9)
    return bias.repeat_interleave(num_heads, dim=0)
