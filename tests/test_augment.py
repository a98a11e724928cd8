"""DiffAugment: shapes kept, each transform what it says, gradients pass, unknown policies refused."""
import pytest
import torch

from translate.augment import cutout, diff_augment, parse_policy, translation


def test_translation_is_a_shift_with_edges_repeated():
    torch.manual_seed(0)
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(64, 1, 1, 1)  # 4 px: shifts of -1, 0, +1 in each axis
    out = translation(x, ratio=0.25)
    assert out.shape == x.shape
    shifts = set()
    for image in out[:, 0]:
        dy, dx = int(image[1, 1] // 4) - 1, int(image[1, 1] % 4) - 1
        expected = x[0, 0].index_select(0, (torch.arange(4) + dy).clamp(0, 3)).index_select(
            1, (torch.arange(4) + dx).clamp(0, 3))
        assert torch.equal(image, expected)
        shifts.add((dy, dx))
    assert len(shifts) == 9  # every shift occurs in 64 draws


def test_cutout_blanks_one_square_of_half_the_side():
    torch.manual_seed(0)
    x = torch.ones(32, 3, 8, 8)
    out = cutout(x)
    assert ((out == 0).all(1).flatten(1).sum(1) == 16).all()  # a 4 x 4 square in every image, all channels
    assert ((out == 0) | (out == 1)).all()


def test_gradients_pass_and_policy_is_checked():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    diff_augment(x, parse_policy("translation, cutout")).sum().backward()
    assert x.grad.abs().sum() > 0
    assert parse_policy("") == ()
    with pytest.raises(ValueError, match="unknown policy 'color'"):
        parse_policy("translation,color")
