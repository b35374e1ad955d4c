"""Image encoders: layout detection, pixel scaling, channels-last conversion, random shift, CNN trunks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from offrl.nn.encoders import (
    EncoderConfig,
    FlatEncoder,
    ImageEncoder,
    MinAtarCNN,
    NatureCNN,
    ResNetCNN,
    detect_channels_last,
    make_encoder,
    make_trunk,
    random_shift,
)


@pytest.mark.parametrize(
    ("shape", "last"),
    [((84, 84), False), ((4, 84, 84), False), ((84, 84, 3), True), ((210, 160, 3), True), ((10, 10, 7), True), ((3, 64, 48), False)],
)
def test_channels_last_detection(shape, last):
    assert detect_channels_last(shape) is last


def test_pixels_scaled_by_the_space_bound_and_channels_last_converted_once():
    images = torch.randint(0, 256, (5, 8, 9, 3), dtype=torch.uint8)
    encoder = ImageEncoder(gym.spaces.Box(0, 255, (8, 9, 3), np.uint8))
    out = encoder(images)
    assert out.shape == (5, 3, 8, 9) and out.dtype == torch.float32 and out.is_contiguous()
    torch.testing.assert_close(out, images.permute(0, 3, 1, 2).float() / 255)
    binary = ImageEncoder(gym.spaces.Box(0, 1, (10, 10, 4), np.bool_))  # MinAtar: 0/1 channels stay 0/1
    torch.testing.assert_close(binary(torch.ones(2, 10, 10, 4)), torch.ones(2, 4, 10, 10))


def test_stacked_frames_become_channels_in_time_order():
    frames = torch.arange(2 * 3 * 6 * 6 * 2, dtype=torch.float32).reshape(2, 3, 6, 6, 2) % 200  # [B, K, H, W, C]
    encoder = ImageEncoder(gym.spaces.Box(0, 255, (6, 6, 2), np.uint8), frame_stack=3)
    out = encoder(frames.to(torch.uint8))
    assert encoder.out_shape == (6, 6, 6) and out.shape == (2, 6, 6, 6)
    torch.testing.assert_close(out[:, 2:4], frames[:, 1].permute(0, 3, 1, 2) / 255)  # frame 1's two channels


def test_random_shift_moves_each_image_by_at_most_pad_pixels():
    torch.manual_seed(0)
    image = torch.zeros(64, 1, 9, 9)
    image[:, :, 4, 4] = 1.0  # one lit pixel in the middle
    shifted = random_shift(image, 2)
    assert shifted.shape == image.shape
    positions = shifted[:, 0].flatten(1).argmax(1)
    rows, cols = positions // 9, positions % 9
    assert (rows - 4).abs().max() <= 2 and (cols - 4).abs().max() <= 2
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # per-image shifts, not one for the batch
    assert torch.all(shifted.sum((1, 2, 3)) == 1)
    encoder = ImageEncoder(gym.spaces.Box(0, 255, (1, 9, 9), np.uint8), shift=2)
    encoder.train(False)  # evaluation: no augmentation
    pixels = (image * 255).to(torch.uint8)
    torch.testing.assert_close(encoder(pixels), image)


def test_trunks_by_config_and_their_widths():
    config = EncoderConfig(encoder_features=64)
    nature = make_trunk(make_encoder(gym.spaces.Box(0, 255, (84, 84), np.uint8), config), config)
    assert isinstance(nature, NatureCNN) and nature(torch.zeros(2, 1, 84, 84)).shape == (2, 64)
    small = make_trunk(make_encoder(gym.spaces.Box(0, 1, (10, 10, 4), np.uint8), config), config)
    assert isinstance(small, ResNetCNN) and small(torch.zeros(2, 4, 10, 10)).shape == (2, 64)
    minatar_config = EncoderConfig(encoder="minatar", encoder_features=128)
    minatar = make_trunk(make_encoder(gym.spaces.Box(0, 1, (10, 10, 4), np.uint8), minatar_config), minatar_config)
    assert isinstance(minatar, MinAtarCNN) and minatar(torch.zeros(2, 4, 10, 10)).shape == (2, 128)
    assert minatar.head[0].in_features == 16 * 8 * 8  # one 3x3 convolution, no padding, as the MinAtar paper
    with pytest.raises(ValueError, match="at least 36x36"):
        NatureCNN((1, 10, 10), 32)
    dict_space = gym.spaces.Dict({"rgb": gym.spaces.Box(0, 255, (12, 12, 3), np.uint8), "q": gym.spaces.Box(-1, 1, (5,), np.float32)})
    encoder = make_encoder(dict_space, config)
    trunk = make_trunk(encoder, config)
    features = trunk(encoder({"rgb": torch.zeros(3, 12, 12, 3, dtype=torch.uint8), "q": torch.ones(3, 5)}))
    assert features.shape == (3, 64 + 5)
    stacked = make_encoder(gym.spaces.Box(-1, 1, (4,), np.float32), EncoderConfig(frame_stack=3))  # robomimic's low-dim stacks
    stacked.set_statistics(np.arange(4.0), np.full(4, 2.0))
    frames = torch.arange(24.0).reshape(2, 3, 4)
    assert stacked.out_dim == 12 and stacked.stacked_keys is None
    assert torch.equal(stacked(frames), ((frames - torch.arange(4.0)) / 2.0).reshape(2, 12))  # each frame standardized
    vector_dict = gym.spaces.Dict({"b": gym.spaces.Box(-1, 1, (2,)), "a": gym.spaces.Box(-1, 1, (1,))})
    stacked_dict = make_encoder(vector_dict, EncoderConfig(frame_stack=2))
    assert stacked_dict.stacked_keys == ["a", "b"] and stacked_dict.out_dim == 6
    out = stacked_dict({"a": torch.tensor([[[1.0], [2.0]]]), "b": torch.tensor([[[3.0, 4.0], [5.0, 6.0]]])})
    assert out.tolist() == [[1.0, 3.0, 4.0, 2.0, 5.0, 6.0]]  # frame by frame, keys in sorted order
    flat = make_encoder(dict_space, EncoderConfig(encoder="mlp"))  # every key flattened, images included
    assert isinstance(flat, FlatEncoder) and flat.out_dim == 12 * 12 * 3 + 5
    with pytest.raises(ValueError, match="frame_stack > 1 needs a CNN encoder, not encoder=mlp"):
        make_encoder(dict_space, EncoderConfig(encoder="mlp", frame_stack=2))
