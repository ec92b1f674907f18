import numpy as np
import pytest

from lbdask.errors import InputError, IntegrityError
from lbdask.latent.codec import LatentCodec, checksum, compressed_size


def latent(seed=0, shape=(8, 6, 5)):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, shape) * np.arange(1, shape[0] + 1)[:, None, None]
    return z.astype(np.float32)


def test_fp16_round_trip_is_exact_to_fp16():
    z = latent()
    codec = LatentCodec(16)
    enc = codec.encode(z)
    assert enc.data.dtype == np.float16 and enc.lo is None and enc.hi is None
    np.testing.assert_array_equal(codec.decode(enc), z.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("bits", [8, 6])
@pytest.mark.parametrize("per_channel", [True, False])
def test_quantised_error_is_at_most_half_a_step(bits, per_channel):
    z = latent(bits)
    codec = LatentCodec(bits, per_channel=per_channel)
    enc = codec.encode(z)
    assert enc.data.dtype == np.uint16 and int(enc.data.max()) <= 2**bits - 1
    assert len(enc.lo) == (z.shape[0] if per_channel else 1)
    axes = (1, 2) if per_channel else None
    step = (z.max(axis=axes, keepdims=True) - z.min(axis=axes, keepdims=True)) / (2**bits - 1)
    err = np.abs(codec.decode(enc) - z)
    assert (err <= step / 2 * (1 + 1e-5) + 1e-6).all()
    # every quantisation level range end is reached: min maps to 0, max to the top level
    assert enc.data.min() == 0 and enc.data.max() == 2**bits - 1


def test_per_channel_range_beats_per_tensor_on_unequal_channels():
    z = latent(3)
    per_ch = LatentCodec(6).decode(LatentCodec(6).encode(z))
    per_t = LatentCodec(6, per_channel=False).decode(LatentCodec(6, per_channel=False).encode(z))
    assert np.abs(per_ch - z).mean() < np.abs(per_t - z).mean()


@pytest.mark.parametrize("bits", [8, 6])
def test_constant_channels_come_back_exactly(bits):
    z = latent()
    z[2] = 1.25
    z[5] = 0.0
    out = LatentCodec(bits).decode(LatentCodec(bits).encode(z))
    assert (out[2] == 1.25).all() and (out[5] == 0.0).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("bits", [16, 8])
def test_non_finite_latents_are_rejected(bad, bits):
    z = latent()
    z[0, 0, 0] = bad
    with pytest.raises(InputError, match="NaN or infinite"):
        LatentCodec(bits).encode(z)


def test_fp16_overflow_and_bad_precision_are_rejected():
    with pytest.raises(InputError, match="fp16 range"):
        LatentCodec(16).encode(np.full((1, 2, 2), 1e6, np.float32))
    with pytest.raises(InputError, match="precision"):
        LatentCodec(4)


def test_checksum_detects_a_flipped_value():
    codec = LatentCodec(8)
    enc = codec.encode(latent())
    assert enc.checksum == checksum(enc.data)
    enc.data[0, 0, 0] ^= 1
    with pytest.raises(IntegrityError, match="checksum"):
        codec.decode(enc)


def test_fewer_bits_compress_smaller():
    z = latent(shape=(16, 32, 32))
    sizes = {b: compressed_size(LatentCodec(b).encode(z).data) for b in (16, 8, 6)}
    assert sizes[16] > sizes[8] > sizes[6]
    assert sizes[16] < z.astype(np.float16).nbytes * 1.05
