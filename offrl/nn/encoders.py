"""Observation encoders. Normalization lives here, so it travels with every network and checkpoint.

Two halves: an *encoder* (``make_encoder``) has no learned weights: it standardizes vectors,
scales pixels, converts image layouts and augments; a *trunk* (``make_trunk``) is the learned
part (a CNN for images, nothing for vectors) and belongs to one network, so target networks copy
it with the rest of their weights.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from offrl.data.tree import tree_map
from offrl.errors import SpaceError
from offrl.nn.layers import Linear


class FlatEncoder(nn.Module):
    """Vector observations (one Box, or a Dict of Boxes) -> normalized, concatenated features ``[B, D]``.

    Normalization is ``(x - mean) / std`` with statistics set from a dataset
    (``set_statistics``); until then it is the identity. Dict keys are
    concatenated in sorted order.
    """

    normalized_keys: tuple[str, ...] | None = None  # all of them

    def __init__(self, observation_space: gym.Space, *, allow_images: bool = False, frames: int = 1) -> None:
        super().__init__()
        if isinstance(observation_space, gym.spaces.Dict):
            self.keys: list[str] | None = sorted(observation_space.spaces)
            spaces = [observation_space.spaces[k] for k in self.keys]
        else:
            self.keys = None
            spaces = [observation_space]
        for space in spaces:
            if not isinstance(space, gym.spaces.Box):
                raise SpaceError(f"observation space {space} is not a Box: offrl's networks read Box (vector or image) "
                                 "observations; store discrete states one-hot")
            if is_image(space) and not allow_images:
                raise ValueError(
                    f"observation space {space} is not a vector: image observations need an image encoder"
                )
        self.widths = [int(np.prod(space.shape)) for space in spaces]
        # ``frames`` > 1: each observation is a stack [B, frames, ...] (robomimic's frame_stack on low-dim keys),
        # standardized frame by frame with the one-frame statistics and flattened
        self.frames = frames
        self.stacked_keys = self.keys if frames > 1 else None
        self.out_dim = frames * sum(self.widths)
        self.register_buffer("mean", torch.zeros(sum(self.widths)))
        self.register_buffer("std", torch.ones(sum(self.widths)))

    def set_statistics(self, mean: np.ndarray | dict[str, np.ndarray], std: np.ndarray | dict[str, np.ndarray]) -> None:
        flat_mean = self._concat_numpy(mean)
        flat_std = self._concat_numpy(std)
        if np.any(flat_std <= 0):
            raise ValueError("observation std must be positive: add an epsilon")
        self.mean.copy_(torch.as_tensor(flat_mean))
        self.std.copy_(torch.as_tensor(flat_std))

    def forward(self, observations: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if self.keys is None:
            x = observations.reshape(observations.shape[0], self.frames, -1)
        else:
            x = torch.cat([observations[k].reshape(observations[k].shape[0], self.frames, -1) for k in self.keys], dim=-1)
        return ((x.float() - self.mean) / self.std).reshape(x.shape[0], -1)

    def _concat_numpy(self, value: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
        flat = tree_map(lambda a: np.asarray(a, dtype=np.float32).reshape(-1), value)
        if self.keys is None:
            return flat
        return np.concatenate([flat[k] for k in self.keys])


# ------------------------------------------------------------------ images


@dataclasses.dataclass
class EncoderConfig:
    """Observation-encoder fields, shared by every algorithm that learns an encoder (its config inherits them)."""

    # images: auto = Nature CNN at >= 36 px, else ResNet; spatial_softmax = robomimic's keypoint encoder
    encoder: Literal["auto", "mlp", "nature", "resnet", "minatar", "spatial_softmax"] = "auto"
    encoder_features: int = 512  # width of the image encoder's output layer
    frame_stack: int = 1  # consecutive frames per observation, stacked at sampling time from single stored frames
    image_shift: int = 0  # DrQ random-shift augmentation in training: pad by this many pixels, crop back (0: off)
    channels_last: bool | None = None  # image layout (H, W, C); None: detected from the shape


def is_image(space: gym.Space) -> bool:
    """An integer or boolean Box of rank 2 (H, W) or 3 (C, H, W or H, W, C)."""
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) in (2, 3)
        and (np.issubdtype(space.dtype, np.integer) or space.dtype == np.bool_)
    )


def detect_channels_last(shape: tuple[int, ...]) -> bool:
    """(H, W, C) or (C, H, W)? Equal spatial sides decide; otherwise the smaller end is the channels;
    Gymnasium's (H, W, C) when nothing tells them apart."""
    if len(shape) != 3:
        return False
    first, middle, last = shape
    if middle == last and first != middle:
        return False
    if first == middle and middle != last:
        return True
    return last <= first


class ImageEncoder(nn.Module):
    """Stored images -> float ``[B, frames * C, H, W]`` on the device, the input of a CNN trunk.

    Frames arrive stacked by the sampler as ``[B, frames, *frame]`` (or ``[B, *frame]`` for one
    frame); integer pixels are scaled to [0, 1] by the space's upper bound; channels-last frames
    are converted here, once per batch, before any convolution. In training mode, ``shift`` > 0
    applies DrQ's random shift (replicate-pad, random crop back to size), a fresh shift per image.
    """

    normalized_keys: tuple[str, ...] = ()  # pixels are scaled by the space's bound, never standardized

    def __init__(self, space: gym.spaces.Box, *, frame_stack: int = 1, channels_last: bool | None = None, shift: int = 0) -> None:
        super().__init__()
        if frame_stack < 1:
            raise ValueError(f"frame_stack must be at least 1, got {frame_stack}")
        shape = tuple(space.shape)
        self.frame_shape = shape
        self.frame_stack = frame_stack
        self.channels_last = detect_channels_last(shape) if channels_last is None else bool(channels_last and len(shape) == 3)
        if len(shape) == 2:
            channels, height, width = 1, *shape
        elif self.channels_last:
            height, width, channels = shape
        else:
            channels, height, width = shape
        self.out_shape = (frame_stack * channels, height, width)
        high = float(np.max(space.high)) if np.all(np.isfinite(space.high)) else 1.0
        self.scale = 1.0 / high if high > 0 else 1.0
        self.shift = int(shift)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        x = observations.reshape(-1, self.frame_stack, *self.frame_shape)
        if self.channels_last:
            x = x.movedim(-1, 2)
        x = x.reshape(x.shape[0], *self.out_shape).contiguous().float() * self.scale  # one copy, at the narrowest dtype
        if self.training and self.shift > 0:
            x = random_shift(x, self.shift)
        return x


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ's augmentation (Kostrikov et al. 2020): replicate-pad by ``pad``, crop a random window of the
    original size per image (whole-pixel shifts, as the paper's random crop)."""
    batch, _, height, width = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (2, batch, 1), device=images.device)
    rows = offsets[0] + torch.arange(height, device=images.device)  # [B, H]
    cols = offsets[1] + torch.arange(width, device=images.device)  # [B, W]
    index = torch.arange(batch, device=images.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class DictEncoder(nn.Module):
    """Dict observations: each image key through its own ``ImageEncoder``; the vector keys together
    through one ``FlatEncoder`` (output key ``"_vectors"``)."""

    VECTORS = "_vectors"

    def __init__(self, space: gym.spaces.Dict, config) -> None:
        super().__init__()
        self.image_keys = sorted(k for k, s in space.spaces.items() if is_image(s))
        self.vector_keys = sorted(k for k in space.spaces if k not in self.image_keys)
        self.images = nn.ModuleDict({k: image_encoder(space.spaces[k], config) for k in self.image_keys})
        self.vectors = FlatEncoder(gym.spaces.Dict({k: space.spaces[k] for k in self.vector_keys})) if self.vector_keys else None
        self.normalized_keys = tuple(self.vector_keys)
        self.stacked_keys = self.image_keys  # frame stacks are of the images; vector keys are one step

    def set_statistics(self, mean: dict[str, np.ndarray], std: dict[str, np.ndarray]) -> None:
        """Statistics of the vector keys (``normalized_keys``); images are scaled, not standardized."""
        self.vectors.set_statistics({k: mean[k] for k in self.vector_keys}, {k: std[k] for k in self.vector_keys})

    def forward(self, observations: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {key: self.images[key](observations[key]) for key in self.image_keys}
        if self.vectors is not None:
            out[self.VECTORS] = self.vectors({k: observations[k] for k in self.vector_keys})
        return out


def image_encoder(space: gym.spaces.Box, config) -> ImageEncoder:
    return ImageEncoder(
        space,
        frame_stack=getattr(config, "frame_stack", 1),
        channels_last=getattr(config, "channels_last", None),
        shift=getattr(config, "image_shift", 0),
    )


def make_encoder(observation_space: gym.Space, config) -> nn.Module:
    """The preprocessing encoder for ``observation_space``: no learned weights, only normalization,
    pixel scaling, layout and augmentation (learned layers are trunks, see ``make_trunk``).

    Configs without the ``EncoderConfig`` fields take vector observations only.
    """
    if not isinstance(config, EncoderConfig):
        return FlatEncoder(observation_space)
    stacked = getattr(config, "frame_stack", 1) > 1
    if config.encoder == "mlp":  # images flattened into the vector, as d3rlpy's VectorEncoder would take them
        if stacked:
            raise ValueError("frame_stack > 1 needs a CNN encoder, not encoder=mlp")
        return FlatEncoder(observation_space, allow_images=True)
    if isinstance(observation_space, gym.spaces.Dict):
        if any(is_image(s) for s in observation_space.spaces.values()):
            return DictEncoder(observation_space, config)
    elif is_image(observation_space) or config.encoder in ("nature", "resnet", "minatar", "spatial_softmax"):
        return image_encoder(observation_space, config)
    return FlatEncoder(observation_space, frames=config.frame_stack)


# ------------------------------------------------------------------ trunks (learned)


class NatureCNN(nn.Module):
    """Mnih et al. 2015's DQN torso: 32x8x8/4, 64x4x4/2, 64x3x3/1 convolutions, then a ReLU linear layer."""

    def __init__(self, in_shape: tuple[int, int, int], features: int) -> None:
        super().__init__()
        channels, height, width = in_shape
        if min(height, width) < 36:
            raise ValueError(f"the Nature CNN needs images of at least 36x36 pixels, got {height}x{width}: use encoder=resnet")
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Sequential(Linear(_flat_width(self.convs, in_shape), features), nn.ReLU())
        self.out_dim = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(images))


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class ResNetCNN(nn.Module):
    """The small ResNet of IMPALA (Espeholt et al. 2018): stages of conv 3x3, max-pool 3x3/2 and two
    residual blocks (16, 32, 32 channels), then a ReLU linear layer. Works from 8x8 pixels up."""

    def __init__(self, in_shape: tuple[int, int, int], features: int, stages: tuple[int, ...] = (16, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_shape[0]
        for width in stages:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                _ResidualBlock(width),
                _ResidualBlock(width),
            ]
            channels = width
        layers += [nn.ReLU(), nn.Flatten()]
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(Linear(_flat_width(self.convs, in_shape), features), nn.ReLU())
        self.out_dim = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(images))


class MinAtarCNN(nn.Module):
    """The network of the MinAtar paper (Young & Tian 2019): one 16-filter 3x3 convolution (stride 1, no
    padding), then a ReLU linear layer (128 units there: ``encoder_features=128``)."""

    def __init__(self, in_shape: tuple[int, int, int], features: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(in_shape[0], 16, 3, stride=1), nn.ReLU(), nn.Flatten())
        self.head = nn.Sequential(Linear(_flat_width(self.convs, in_shape), features), nn.ReLU())
        self.out_dim = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(images))


class SpatialSoftmax(nn.Module):
    """Feature maps -> keypoints (Levine et al. 2016; robomimic's visual core): a 1x1 convolution to
    ``keypoints`` maps, a softmax over each map's pixels, and the expected (x, y) position under it, in
    [-1, 1]. ``[B, C, H, W]`` -> ``[B, 2 * keypoints]``: where things are, not what the pixels look like."""

    def __init__(self, channels: int, height: int, width: int, keypoints: int = 32) -> None:
        super().__init__()
        self.to_keypoints = nn.Conv2d(channels, keypoints, 1)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1), persistent=False)  # [H*W, 2]
        self.out_dim = 2 * keypoints

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        attention = torch.softmax(self.to_keypoints(maps).flatten(2), dim=-1)  # [B, K, H*W]
        return (attention @ self.grid).flatten(1)  # [B, K * 2]


class SpatialSoftmaxCNN(nn.Module):
    """robomimic's image encoder in small: a convolutional backbone keeping spatial resolution (3x3 convs, the
    first with stride 2), 32 spatial-softmax keypoints, a linear layer to ``features`` (robomimic: 64).
    robomimic's default backbone is a ResNet-18 trunk, too slow to train on a CPU; the keypoint layer is the same."""

    def __init__(self, in_shape: tuple[int, int, int], features: int, keypoints: int = 32) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_shape[0], 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        )
        with torch.no_grad():
            _, channels, height, width = self.convs(torch.zeros(1, *in_shape)).shape
        self.keypoints = SpatialSoftmax(channels, height, width, keypoints)
        self.head = Linear(self.keypoints.out_dim, features)
        self.out_dim = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.keypoints(self.convs(images)))


def _flat_width(convs: nn.Module, in_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(convs(torch.zeros(1, *in_shape)).shape[1])


class Identity(nn.Module):
    """The trunk of vector observations: the normalized features themselves."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        self.out_dim = out_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class MultiTrunk(nn.Module):
    """Per-key trunks of a ``DictEncoder``'s output, concatenated in sorted key order."""

    def __init__(self, trunks: dict[str, nn.Module]) -> None:
        super().__init__()
        self.keys = sorted(trunks)
        self.trunks = nn.ModuleDict(trunks)
        self.out_dim = sum(t.out_dim for t in trunks.values())

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.trunks[k](features[k]) for k in self.keys], dim=-1)


def make_trunk(encoder: nn.Module, config) -> nn.Module:
    """The learned part of an observation encoder, for one network (each network owns its trunk)."""
    if isinstance(encoder, FlatEncoder):
        return Identity(encoder.out_dim)
    if isinstance(encoder, ImageEncoder):
        return _cnn(encoder.out_shape, config)
    trunks = {key: _cnn(sub.out_shape, config) for key, sub in encoder.images.items()}
    if encoder.vectors is not None:
        trunks[DictEncoder.VECTORS] = Identity(encoder.vectors.out_dim)
    return MultiTrunk(trunks)


def encode_sequence(encoder: nn.Module, trunk: nn.Module, observations) -> torch.Tensor:
    """``[B, T, ...]`` observations (or a dict of them) through ``encoder`` and ``trunk`` as one batch: ``[B, T, F]``."""
    leading = next(iter(observations.values())) if isinstance(observations, dict) else observations
    batch, length = leading.shape[:2]
    flat = tree_map(lambda t: t.reshape(batch * length, *t.shape[2:]), observations)
    return trunk(encoder(flat)).reshape(batch, length, -1)


class TrunkEncoder(nn.Module):
    """An encoder with its learned trunk, ``[B, out_dim]`` features: the one CNN of an algorithm whose
    networks share their observation features (DrQ-v2's layout, Yarats et al. 2021: the critic's loss
    trains it, the actor reads its output detached; next states go through it without gradients)."""

    def __init__(self, encoder: nn.Module, config) -> None:
        super().__init__()
        self.preprocess = encoder
        self.trunk = make_trunk(encoder, config)
        self.out_dim = self.trunk.out_dim
        self.normalized_keys = encoder.normalized_keys
        self.stacked_keys = getattr(encoder, "stacked_keys", None)

    def set_statistics(self, mean, std) -> None:
        self.preprocess.set_statistics(mean, std)

    def forward(self, observations) -> torch.Tensor:
        return self.trunk(self.preprocess(observations))


def with_trunk(encoder: nn.Module, config) -> nn.Module:
    """``encoder`` followed by its learned trunk when it has one to learn (images); vector encoders as they are."""
    return encoder if isinstance(encoder, FlatEncoder) else TrunkEncoder(encoder, config)


def _cnn(in_shape: tuple[int, int, int], config) -> nn.Module:
    kind = config.encoder
    if kind in ("auto", "mlp"):
        kind = "nature" if min(in_shape[1:]) >= 36 else "resnet"
    cls = {"nature": NatureCNN, "resnet": ResNetCNN, "minatar": MinAtarCNN, "spatial_softmax": SpatialSoftmaxCNN}[kind]
    return cls(in_shape, config.encoder_features)
