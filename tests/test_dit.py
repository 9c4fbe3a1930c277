"""The DiT: patches, zero init, conditioning and config checks."""

import pytest
import torch

from course_lib import dit


@pytest.mark.parametrize("patch", [2, 4, 8])
def test_patchify_and_unpatchify_are_inverses(patch):
    images = torch.randn(3, 1, 32, 32)
    tokens = dit.patchify(images, patch)
    assert tokens.shape == (3, (32 // patch) ** 2, patch * patch)
    torch.testing.assert_close(dit.unpatchify(tokens, patch, 1), images, rtol=0, atol=0)


def test_patchify_orders_patches_row_major():
    images = torch.arange(16.0).view(1, 1, 4, 4)
    tokens = dit.patchify(images, 2)
    torch.testing.assert_close(tokens[0, 0], torch.tensor([0.0, 1, 4, 5]))  # top-left patch
    torch.testing.assert_close(tokens[0, 1], torch.tensor([2.0, 3, 6, 7]))  # its right neighbour


def test_fresh_dit_outputs_zeros():
    model = dit.DiT(dit.preset("tiny", cross_attention=True))
    out = model(torch.randn(4, 1, 32, 32), torch.rand(4), torch.tensor([0, 3, 9, 10]))
    assert out.shape == (4, 1, 32, 32)
    assert (out == 0).all()


def test_output_depends_on_t_after_a_few_steps():
    torch.manual_seed(0)
    model = dit.DiT(dit.preset("tiny"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.randn(16, 1, 32, 32)
    t = torch.rand(16)
    for _ in range(20):  # target depends on t, so the gates must open towards t
        loss = (model(x, t) - t.view(-1, 1, 1, 1) * x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        early, late = model(x[:2], torch.zeros(2)), model(x[:2], torch.ones(2))
    assert (early - late).abs().mean() > 0.05 * early.abs().mean()


def test_labels_change_the_output_with_cross_attention():
    torch.manual_seed(0)
    model = dit.DiT(dit.preset("tiny", cross_attention=True))
    for block in model.blocks:  # open the zero-initialised paths so the label can act
        torch.nn.init.normal_(block.cross.out.weight, std=0.1)
    torch.nn.init.normal_(model.final.linear.weight, std=0.1)
    x, t = torch.randn(2, 1, 32, 32), torch.rand(2)
    a = model(x, t, torch.tensor([1, 1]))
    b = model(x, t, torch.tensor([7, 7]))
    assert (a - b).abs().max() > 1e-4
    with pytest.raises(ValueError, match="labels must lie"):
        model(x, t, torch.tensor([11, 0]))


def test_sincos_positions_are_distinct():
    pos = dit.sincos_2d_positions(64, 8)
    assert pos.shape == (64, 64)
    distances = torch.cdist(pos, pos) + torch.eye(64) * 1e3
    assert distances.min() > 0.1


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="does not divide"):
        dit.DiTConfig(patch_size=5)
    with pytest.raises(ValueError, match="positive"):
        dit.DiTConfig(dim=0)
    with pytest.raises(ValueError, match="condition tokens"):
        dit.DiTConfig(cross_attention=True, cond_tokens=1)
    with pytest.raises(ValueError, match="unknown DiT preset"):
        dit.preset("huge")
    model = dit.DiT(dit.preset("tiny"))
    with pytest.raises(ValueError, match="expected images"):
        model(torch.randn(2, 1, 28, 28), torch.rand(2))
