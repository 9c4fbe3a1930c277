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


# ---------------------------------------------------------------------------- legibility (issue 28)
def _pixel_boxes(fig, *artists):
    """Where each of ``artists`` lands in the figure, in pixels, after one draw (figures from plotting.figure
    are detached from pyplot: they get an Agg canvas here)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return [artist.get_window_extent(canvas.get_renderer()) for artist in artists]


@pytest.mark.parametrize("n_rows", [1, 2, 4, 9, 16])
def test_same_noise_grid_title_stays_clear_of_the_images_at_any_number_of_rows(n_rows):
    """The title once sat on the first row of a tall grid (notebooks 05 and 07): margins are now inches."""
    rows = {f"row {r}": digits(10, seed=r) for r in range(n_rows)}
    fig = plotting.same_noise_grid(rows, "the same ten noise images, solved with more and more steps", cell=0.7)
    names = [ax.yaxis.label for ax in fig.axes[::10]]
    title, *boxes = _pixel_boxes(fig, fig._suptitle, *fig.axes, *names)
    assert title.y1 <= fig.bbox.y1  # inside the figure
    assert all(title.y0 > box.y1 for box in boxes[:len(fig.axes)]), "the title overlaps the first row"
    assert [name.get_text() for name in names] == [f"row {r}" for r in range(n_rows)]
    assert all(box.x0 >= 0 for box in boxes[len(fig.axes):])  # row names left of their row, inside the figure


def test_a_long_title_wraps_and_still_clears_a_narrow_grid():
    fig = plotting.same_noise_grid({"base": digits(3), "reflow": digits(3, seed=1)},
                                   "Euler, 16 steps = 16 NFE, same noise in every row (0.35 s)")
    title, *boxes = _pixel_boxes(fig, fig._suptitle, *fig.axes)
    assert "\n" in fig._suptitle.get_text()
    assert title.x0 >= 0 and title.x1 <= fig.bbox.x1 and title.y1 <= fig.bbox.y1
    assert all(title.y0 > box.y1 for box in boxes)


def test_sample_histograms_draws_one_panel_per_set_each_with_the_target_density():
    """Three histograms overlaid were one blob (notebook 06): now one panel each, sharing the axes."""
    g = torch.Generator().manual_seed(0)
    samples = {name: 0.5 + 0.3 * torch.randn(5000, generator=g) for name in ("ODE", "SDE γ = 1", "SDE γ = 2")}
    fig = plotting.sample_histograms(samples, 0.5, 0.3, title="5,000 samples each")
    assert len(fig.axes) == 3
    for ax, name in zip(fig.axes, samples, strict=True):
        assert ax.get_title().startswith(name) and ax.patches and len(ax.lines) == 1
        assert ax.get_xlabel() == "value"
    assert len({ax.patches[0].get_facecolor() for ax in fig.axes}) == 3  # a colour each
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert labels == ["samples", "N(0.50, 0.30²)"] and fig.axes[0].get_ylabel() == "density"


def test_quality_against_keeps_equal_series_visible_side_by_side():
    """Notebook 07: the reflow line (same accuracy) hid the base line. Each series has its own marker and
    line style and is drawn a few points sideways; the data themselves are unchanged."""
    series = {"base": [(1, 0.995, 1100.0), (2, 1.0, 90.0), (4, 1.0, 43.0)],
              "reflow": [(1, 0.995, 48.0), (2, 1.0, 52.0), (4, 1.0, 58.0)]}
    fig = plotting.quality_against(series, "NFE", floor=36.6, log_x=True, n=200)
    left, right = fig.axes
    base, reflow = left.containers[0].lines[0], left.containers[1].lines[0]
    assert list(base.get_ydata()) == list(reflow.get_ydata()) == pytest.approx([99.5, 100.0, 100.0])
    assert (base.get_marker(), base.get_linestyle()) != (reflow.get_marker(), reflow.get_linestyle())
    _pixel_boxes(fig, left)  # drawn once: the transforms know the figure's size
    on_screen = [line.get_transform().transform(line.get_xydata()) for line in (base, reflow)]
    gaps = on_screen[1][:, 0] - on_screen[0][:, 0]  # pixels between the two series at each x
    assert (gaps > 2).all() and (gaps < 15).all()
    for ax in (left, right):
        assert {"base", "reflow"} <= {text.get_text() for text in ax.get_legend().get_texts()}


STEPS = {"uniform": torch.arange(1000), "early": torch.full((1000,), 100)}
PAIR = {"a": [1.0, 0.5], "b": [2.0, 1.0]}
SERIES_FIGURES = {  # every plotting function that can draw several series, with two
    "schedule_curves": lambda: plotting.schedule_curves({"linear": ddpm.NoiseScheduler(),
                                                          "cosine": ddpm.NoiseScheduler(schedule="cosine")}),
    "step_histogram": lambda: plotting.step_histogram(STEPS, ddpm.NoiseScheduler()),
    "prediction_error_scales": lambda: plotting.prediction_error_scales(ddpm.NoiseScheduler()),
    "loss_curve": lambda: plotting.loss_curve([1.0] * 30, smooth=5),
    "loss_by_time": lambda: plotting.loss_by_time([0.25, 0.75], PAIR),
    "error_against_steps": lambda: plotting.error_against_steps([1, 2], PAIR),
    "quality_against": lambda: plotting.quality_against({"x": [(1, 0.5, 9.0)], "y": [(1, 0.6, 8.0)]}, "NFE"),
    "sample_histograms": lambda: plotting.sample_histograms({"a": torch.randn(100), "b": torch.randn(100)}, 0.0, 1.0),
    "paths_1d": lambda: plotting.paths_1d([1.0, 0.0], {"p": torch.zeros(2, 3)}, labels=["i", "j", "k"]),
    "trajectories_2d": lambda: plotting.trajectories_2d({"p": torch.zeros(2, 3, 2)}, labels={"p": ["a", "b"]}),
    "guidance_tradeoff": lambda: plotting.guidance_tradeoff([0, 1], [0.5, 0.9], [3.0, 2.0], 3.5, [9.0, 8.0], 2.0),
}


@pytest.mark.parametrize("name", list(SERIES_FIGURES))
def test_every_figure_with_several_series_has_a_legend_and_labelled_axes(name):
    fig = SERIES_FIGURES[name]()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends, f"{name}: several series and no legend"
    in_legends = {text.get_text() for legend in legends for text in legend.get_texts()}
    for ax in fig.axes:
        named = {artist.get_label() for artist in (*ax.lines, *ax.patches, *ax.containers)
                 if not str(artist.get_label()).startswith("_")}
        assert named <= in_legends | {ax.get_title()}, f"{name}: series {named - in_legends} not in a legend"
        twin = any(other is not ax and other.get_xlabel() for other in ax.get_shared_x_axes().get_siblings(ax))
        if (ax.lines or ax.patches or ax.containers) and not twin:
            assert ax.get_xlabel(), f"{name}: an axes with no x label"


def test_trajectories_2d_names_each_path_and_the_markers_in_its_legend():
    fig = plotting.trajectories_2d({"p": torch.zeros(2, 3, 2), "q": torch.zeros(1, 3, 2)},
                                   labels={"p": ["digit 0", "digit 1"]})
    first, second = (ax.get_legend() for ax in fig.axes)
    assert [t.get_text() for t in first.get_texts()] == ["digit 0", "digit 1", "noise (t = 1)", "image (t = 0)"]
    assert [t.get_text() for t in second.get_texts()] == ["noise (t = 1)", "image (t = 0)"]  # no names given
