"""The figures of notebook 02 draw what they claim; the reverse-process GIF is small and decodes."""

import io

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from course_lib import data, ddpm, dit, plotting  # noqa: E402


def digits(n: int = 16, seed: int = 0) -> torch.Tensor:
    """Synthetic 'digits': a bright bar at a random column on a black (-1) background, (n, 1, 32, 32)."""
    columns = torch.randint(4, 24, (n,), generator=torch.Generator().manual_seed(seed))
    images = -torch.ones(n, 1, 32, 32)
    for image, column in zip(images, columns.tolist(), strict=True):
        image[:, 6:26, column:column + 4] = 1.0
    return images


def reverse_frames(num_frames: int, n: int = 16, seed: int = 0) -> list[torch.Tensor]:
    """A stand-in reverse chain: pure noise at the first frame, the digits at the last."""
    noise = torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed))
    target = digits(n, seed)
    return [(1 - w) * target + w * noise for w in torch.linspace(1, 0, num_frames).tolist()]


# ---------------------------------------------------------------------------- the GIF
def test_reverse_animation_gif_decodes_with_one_frame_per_step_and_stays_under_1_mb():
    frames = reverse_frames(21)
    gif = plotting.reverse_animation_gif(frames, scale=2)
    assert gif[:6] in (b"GIF87a", b"GIF89a")
    assert len(gif) < 1_000_000
    picture = Image.open(io.BytesIO(gif))
    assert picture.n_frames == 21
    side = 2 * (4 * 34 + 2)  # 4 images of 32 px with 2 px padding per row, doubled
    assert picture.size == (side, side)


def test_reverse_animation_gif_shows_the_tiled_frames_in_order():
    frames = reverse_frames(5, n=4)
    picture = Image.open(io.BytesIO(plotting.reverse_animation_gif(frames, scale=1, levels=256)))
    for index in (0, 4):
        picture.seek(index)
        shown = torch.tensor(np.array(picture.convert("L")), dtype=torch.float32) / 255  # (H', W') in [0, 1]
        expected = plotting.grid(frames[index].clamp(-1, 1), nrow=2)
        assert (shown - expected).abs().max() < 1.5 / 255  # 8-bit rounding only
    assert picture.info["loop"] == 0  # loops forever


def test_reverse_animation_gif_refuses_an_empty_chain():
    with pytest.raises(ValueError, match="at least one frame"):
        plotting.reverse_animation_gif([])
    with pytest.raises(ValueError, match="2 labels for 3 frames"):
        plotting.reverse_animation_gif(reverse_frames(3), labels=["a", "b"])


def test_reverse_animation_gif_labels_each_frame_above_an_unchanged_grid():
    frames = reverse_frames(3, n=4)
    labels = ["step 999", "step 500", "result"]
    plain = Image.open(io.BytesIO(plotting.reverse_animation_gif(frames, scale=3, levels=256)))
    labelled = Image.open(io.BytesIO(plotting.reverse_animation_gif(frames, scale=3, levels=256, labels=labels,
                                                                    font_size=20)))
    band = labelled.height - plain.height
    assert labelled.width == plain.width == 3 * (2 * 34 + 2) and band == 30
    captions = []
    for index in range(3):
        plain.seek(index)
        labelled.seek(index)
        shown = np.array(labelled.convert("L"))
        assert (shown[band:] == np.array(plain.convert("L"))).all()  # the grid itself is untouched
        caption = shown[:band]
        assert caption.min() < 100 and (caption > 200).mean() > 0.7  # dark text on a white band
        captions.append(caption)
    assert not (captions[0] == captions[1]).all() and not (captions[1] == captions[2]).all()


# ---------------------------------------------------------------------------- patchify
@pytest.mark.parametrize("patch", [4, 8])
def test_patchify_figure_numbers_every_patch_and_draws_one_column_per_token(patch):
    image = digits(1)[0]
    fig = plotting.patchify_figure(image, patch)
    assert isinstance(fig, Figure)
    n = (32 // patch) ** 2
    _, middle, right = fig.axes
    assert sorted(int(text.get_text()) for text in middle.texts) == list(range(n))
    tokens = torch.as_tensor(right.images[0].get_array().data)  # (p*p, N) in [0, 1]
    assert tokens.shape == (patch * patch, n)
    # column n is patch n, in the same row-major order as dit.patchify
    expected = data.to_unit_range(dit.patchify(image[None], patch)[0].T)
    torch.testing.assert_close(tokens, expected.to(tokens.dtype))


# ---------------------------------------------------------------------------- curves and bars
def test_loss_curve_draws_the_raw_losses_and_their_running_mean():
    losses = [1.0] * 30 + [0.5] * 30
    fig = plotting.loss_curve(losses, smooth=10)
    raw, running = fig.axes[0].lines
    assert len(raw.get_ydata()) == 60
    smoothed = torch.as_tensor(running.get_ydata())
    assert len(smoothed) == 60 - 10 + 1
    assert smoothed[0].item() == pytest.approx(1.0) and smoothed[-1].item() == pytest.approx(0.5)
    assert len(plotting.loss_curve([0.9, 0.8], smooth=50).axes[0].lines) == 2  # window shrinks to fit


def test_compare_grids_one_panel_per_entry_titled_by_its_name():
    grids = {"DDPM 1000 steps: 9.1 s": digits(4), "DDIM 20 steps: 0.2 s": digits(4, seed=1)}
    fig = plotting.compare_grids(grids)
    assert [ax.get_title() for ax in fig.axes] == list(grids)
    shown = torch.as_tensor(fig.axes[1].images[0].get_array().data)
    torch.testing.assert_close(shown, plotting.grid(digits(4, seed=1)))


def test_class_histogram_bars_heights_and_the_uniform_line():
    shares = torch.tensor([0.2, 0.0, 0.1, 0.1, 0.05, 0.05, 0.1, 0.2, 0.1, 0.1])
    fig = plotting.class_histogram_bars(shares, confidence=0.87)
    ax = fig.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx(shares.tolist())
    assert list(ax.lines[0].get_ydata()) == pytest.approx([0.1, 0.1])
    assert "0.87" in ax.get_title()


def test_prediction_error_scales_eps_amplifies_and_v_never_does():
    scheduler = ddpm.NoiseScheduler()
    eps_curve, v_curve = plotting.prediction_error_scales(scheduler).axes[0].lines[:2]
    eps_scale, v_scale = torch.as_tensor(eps_curve.get_ydata()), torch.as_tensor(v_curve.get_ydata())
    assert eps_scale[-1] > 100  # 1/sqrt(SNR) at the last step, about 157
    assert (v_scale <= 1).all()


def test_heatmaps_one_panel_per_matrix():
    fig = plotting.heatmaps({"a": torch.zeros(5, 8), "b": torch.ones(5, 8)}, xlabel="channel")
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["a", "b"]
    assert panels[0].images[0].get_array().shape == (5, 8)


def test_step_histogram_draws_one_normalised_histogram_per_law_and_the_signal_curve():
    scheduler = ddpm.NoiseScheduler()
    draws = {"uniform": torch.arange(1000), "early": torch.full((1000,), 100)}
    fig = plotting.step_histogram(draws, scheduler)
    ax, right = fig.axes
    assert [p.get_label() for p in ax.patches] == ["uniform", "early"]
    heights = [patch.get_path().vertices[:, 1].max() for patch in ax.patches]
    assert heights[0] == pytest.approx(1 / 1000, rel=0.01) and heights[1] == pytest.approx(40 / 1000, rel=0.01)
    torch.testing.assert_close(torch.as_tensor(right.lines[0].get_ydata()), scheduler.alpha_bars.cpu().sqrt())
