"""The explorers build, and moving a slider redraws what is shown."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from course_lib import config, data, ddpm, dit, plotting, widgets  # noqa: E402


@pytest.fixture
def digit():
    """A synthetic 'digit': a bright bar on a black (-1) background, (1, 1, 32, 32)."""
    image = -torch.ones(1, 1, 32, 32)
    image[..., 8:24, 14:18] = 1.0
    return image


def _shown_pixels(explorer) -> torch.Tensor:
    return torch.as_tensor(explorer.figure.axes[0].images[0].get_array().data)  # (H, W) in [0, 1]


def _title(explorer) -> str:
    return explorer.figure.axes[0].get_title()


def test_timestep_explorer_builds_with_a_slider_over_all_steps(digit):
    scheduler = ddpm.NoiseScheduler()
    explorer = widgets.timestep_explorer(digit, scheduler, step=10)
    slider = explorer.controls["step"]
    assert (slider.min, slider.max, slider.value) == (0, 999, 10)
    assert slider in explorer.children[0].children
    assert explorer.figure is not None
    assert _title(explorer).startswith("step 10:")


def test_moving_the_slider_redraws_x_t_with_its_alpha_bar(digit):
    scheduler = ddpm.NoiseScheduler()
    explorer = widgets.timestep_explorer(digit, scheduler, step=0, seed=3)
    first_figure, first_pixels = explorer.figure, _shown_pixels(explorer)

    explorer.controls["step"].value = 999
    assert explorer.figure is not first_figure
    alpha_bar = scheduler.alpha_bars[999].item()
    assert _title(explorer).startswith(f"step 999: ᾱ={alpha_bar:.3g}")  # 4.04e-05, not 0.000
    # what is drawn is the closed form with the explorer's fixed noise, in display range
    expected, _ = scheduler.noise_image(digit, 999, noise=explorer.noise)
    torch.testing.assert_close(_shown_pixels(explorer), data.to_unit_range(expected)[0, 0])
    assert (_shown_pixels(explorer) - first_pixels).abs().max() > 0.5

    # same noise every time: going back to step 0 redraws the very same picture
    explorer.controls["step"].value = 0
    torch.testing.assert_close(_shown_pixels(explorer), first_pixels)
    assert _title(explorer).startswith("step 0:")


def test_timestep_figure_keeps_its_layout_and_readable_text_at_every_step(digit):
    """Moving the slider must not move the axes or flip the legend (it did at step 999); text >= 10 pt."""
    scheduler = ddpm.NoiseScheduler()
    explorer = widgets.timestep_explorer(digit, scheduler, step=0)
    layouts = []
    for step in (0, 250, 998, 999):
        explorer.controls["step"].value = step
        figure = explorer.figure
        figure.canvas.draw()
        legend = figure.axes[1].get_legend()
        layouts.append(([tuple(ax.get_position().bounds) for ax in figure.axes], legend._loc,
                        figure.axes[1].get_xlim(), figure.axes[1].get_ylim(),
                        legend.get_window_extent().bounds))
        sizes = [figure.axes[0].title.get_fontsize(), figure.axes[1].title.get_fontsize(),
                 *(text.get_fontsize() for text in legend.get_texts())]
        assert min(sizes) >= 10, sizes
    assert all(layout == layouts[0] for layout in layouts), layouts


def _png(bundle):
    import base64
    import io

    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(bundle["image/png"])))


def test_a_saved_explorer_shows_a_captioned_picture_and_a_sentence_not_its_repr(digit):
    """Without a live kernel (GitHub, nbconvert, the website), renderers fall back from the widget to the
    bundle's other entries: the picture of the starting state, captioned as such, and a sentence."""
    explorer = widgets.timestep_explorer(digit, ddpm.NoiseScheduler(), step=250)
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # a live kernel still gets the slider
    assert repr(explorer) == widgets.Explorer.PLACEHOLDER
    assert bundle["text/plain"].startswith("Interactive explorer, starting state: step = 250.")
    assert "Explorer(children" not in bundle["text/plain"]
    picture = _png(bundle)
    assert picture.format == "PNG" and picture.width > 500  # the starting state, at the figure's size
    # the caption is written under the figure: the picture is taller than the figure saved alone, and its
    # last rows hold dark text on white
    import io

    from PIL import Image

    alone = io.BytesIO()
    explorer.figure.savefig(alone, format="png", dpi=plotting.FIGURE_DPI, bbox_inches="tight")
    assert picture.height > Image.open(alone).height + 8 and picture.width >= Image.open(alone).width
    bottom = np.asarray(picture.convert("L"))[-12:]
    assert bottom.min() < 100 and (bottom > 200).mean() > 0.8
    assert explorer.figure.texts == []  # the caption is not left on the live figure


def test_the_caption_names_every_control_and_says_when_the_state_is_not_the_start(digit):
    explorer = widgets.timestep_explorer(digit, ddpm.NoiseScheduler(), step=250)
    explorer.controls["step"].value = 600
    caption = explorer._repr_mimebundle_()["text/plain"]
    assert caption.startswith("Interactive explorer, state when displayed: step = 600")
    explorer.controls["step"].value = 250
    assert "starting state: step = 250" in explorer.caption()


def _toy_explorer(keep_images: bool):
    """An Explorer over a fake sampler: two controls, draws counted, images kept when ``keep_images``."""
    import ipywidgets

    calls = []

    def draw(level: float, name: str):
        calls.append((level, name))
        images = torch.full((4, 1, 8, 8), level - 1.0)
        fig = plotting.compare_grids({f"{name}: {level:g}": images})
        return (fig, images) if keep_images else fig

    controls = {"level": ipywidgets.FloatSlider(value=0.5, min=0.0, max=2.0, description="level"),
                "name": ipywidgets.Dropdown(options=["a", "b"], value="a")}
    return widgets.Explorer(controls, draw, noise=torch.zeros(4, 1, 8, 8)), calls


def test_each_draw_displays_exactly_one_figure_the_live_one(monkeypatch):
    """One explorer, one figure: each redraw displays only its new figure in the output area."""
    from matplotlib.figure import Figure

    shown = []
    monkeypatch.setattr(widgets, "display", lambda *objects, **kwargs: shown.extend(objects))
    explorer, calls = _toy_explorer(keep_images=True)
    assert len(calls) == 1 and len(shown) == 1 and shown[0] is explorer.figure
    explorer.controls["level"].value = 1.5
    assert len(calls) == 2 and len(shown) == 2 and shown[-1] is explorer.figure
    assert all(isinstance(item, Figure) for item in shown)
    bundle = explorer._repr_mimebundle_()
    assert sum(mime.startswith("image/") for mime in bundle) == 1  # one fallback picture, no second copy
    assert bundle["text/plain"].startswith("Interactive explorer, state when displayed: level = 1.5, name = a")


def test_the_explorer_keeps_its_attributes_and_the_images_of_every_draw_from_the_first():
    """The constructor's first draw already fills ``images`` (no ``shown = {}`` dance in each explorer)."""
    explorer, _ = _toy_explorer(keep_images=True)
    assert explorer.noise.shape == (4, 1, 8, 8)
    torch.testing.assert_close(explorer.images, torch.full((4, 1, 8, 8), -0.5))
    explorer.controls["level"].value = 2.0
    torch.testing.assert_close(explorer.images, torch.full((4, 1, 8, 8), 1.0))
    plain, _ = _toy_explorer(keep_images=False)  # a draw that returns only its figure keeps no images
    assert plain.images is None and plain.figure is not None


# ---------------------------------------------------------------------------- sampling steps
@pytest.fixture
def random_dit():
    """A tiny untrained DiT whose output layer is randomised, so its output depends on x_t and t."""
    torch.manual_seed(0)
    model = dit.DiT(dit.preset("tiny")).eval()
    torch.nn.init.normal_(model.final.linear.weight, std=0.05)
    return model


def test_sampling_steps_explorer_draws_ddim_from_its_fixed_noise(random_dit):
    scheduler = ddpm.NoiseScheduler()
    explorer = widgets.sampling_steps_explorer(random_dit, scheduler, prediction="v", num_images=4,
                                               steps=3, max_steps=20, seed=1)
    slider = explorer.controls["steps"]
    assert (slider.min, slider.max, slider.value) == (1, 20, 3)
    assert explorer.noise.shape == (4, 1, 32, 32)
    assert _title(explorer).startswith("DDIM 3 steps (NFE 3):")
    x_T = config.randn((4, 1, 32, 32), torch.Generator().manual_seed(1))  # same seed: same x_T
    expected = ddpm.sample_ddim(random_dit, scheduler, x_T, num_steps=3, prediction="v")
    torch.testing.assert_close(_shown_pixels(explorer), plotting.grid(expected))


def test_moving_the_steps_slider_redraws_and_returning_is_deterministic(random_dit):
    scheduler = ddpm.NoiseScheduler()
    explorer = widgets.sampling_steps_explorer(random_dit, scheduler, prediction="v", num_images=4,
                                               steps=2, max_steps=20)
    first_figure, first_pixels = explorer.figure, _shown_pixels(explorer)
    explorer.controls["steps"].value = 1
    assert _title(explorer).startswith("DDIM 1 step (NFE 1):")  # not "1 steps"
    explorer.controls["steps"].value = 10
    assert explorer.figure is not first_figure
    assert _title(explorer).startswith("DDIM 10 steps (NFE 10):")
    assert (_shown_pixels(explorer) - first_pixels).abs().max() > 1e-3
    explorer.controls["steps"].value = 2  # DDIM is deterministic: the same picture comes back
    torch.testing.assert_close(_shown_pixels(explorer), first_pixels)


def test_reflow_explorer_draws_every_model_from_the_same_noise_and_redraws_on_the_slider():
    """Guards: rows drawn from different noise (no side-by-side comparison), or the slider not reaching the ODE."""
    from course_lib import flow
    models = {"curved": flow.gaussian_velocity(0.2, 0.3), "other": flow.gaussian_velocity(-0.1, 0.5)}
    explorer = widgets.reflow_explorer(models, [1, 2, 3], steps=1, max_steps=8, seed=4)
    assert (explorer.controls["steps"].min, explorer.controls["steps"].max) == (1, 8)
    assert explorer.noise.shape == (3, 1, 32, 32)
    # one Euler step of the exact Gaussian field lands every sample on the data mean (notebook 05, 1.3)
    torch.testing.assert_close(explorer.images["curved"], torch.full((3, 1, 32, 32), 0.2), atol=1e-5, rtol=0)
    torch.testing.assert_close(explorer.images["other"], torch.full((3, 1, 32, 32), -0.1), atol=1e-5, rtol=0)
    explorer.controls["steps"].value = 5
    assert "5 steps = 5 NFE" in explorer.figure.texts[0].get_text()
    for name, model in models.items():
        expected = flow.sample_ode(model, explorer.noise, num_steps=5)
        torch.testing.assert_close(explorer.images[name], expected)
