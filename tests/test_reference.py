"""Import of generators saved by the reference CycleGAN (junyanz/pytorch-CycleGAN-and-pix2pix)."""
import functools

import pytest
import torch
from torch import nn

from translate.cli import main
from translate.inference import Translator
from translate.reference import load_weights


class ResnetBlock(nn.Module):
    """The reference models/networks.py ResnetBlock, padding_type='reflect'."""

    def __init__(self, dim, norm_layer, use_dropout, use_bias):
        super().__init__()
        conv_block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
                      norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            conv_block += [nn.Dropout(0.5)]
        conv_block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=use_bias),
                       norm_layer(dim)]
        self.conv_block = nn.Sequential(*conv_block)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """The reference models/networks.py ResnetGenerator (transposed-conv upsampling)."""

    def __init__(self, input_nc=3, output_nc=3, ngf=64, norm="instance", use_dropout=False, n_blocks=6):
        super().__init__()
        norm_layer = (functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
                      if norm == "instance" else functools.partial(nn.BatchNorm2d, affine=True))
        use_bias = norm == "instance"
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
                 norm_layer(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                      norm_layer(ngf * mult * 2), nn.ReLU(True)]
        mult = 4
        model += [ResnetBlock(ngf * mult, norm_layer, use_dropout, use_bias) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * mult, int(ngf * mult / 2), kernel_size=3, stride=2, padding=1,
                                         output_padding=1, bias=use_bias),
                      norm_layer(int(ngf * mult / 2)), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, input):
        return self.model(input)


def _legacy_state(net: nn.Module) -> dict:
    """The state dict as PyTorch < 0.4 saved it: instance norms with (unused) running statistics."""
    state = net.state_dict()
    for name, m in net.named_modules():
        if isinstance(m, nn.InstanceNorm2d):
            state[f"{name}.running_mean"] = torch.rand(m.num_features)
            state[f"{name}.running_var"] = torch.rand(m.num_features) + 0.5
    return state


def _reference_pair(tmp_path, seed=0, legacy=False, **kw):
    """Two reference generators saved as the reference saves them; G_B through DataParallel (`module.` keys)."""
    torch.manual_seed(seed)
    g_a, g_b = ResnetGenerator(**kw).eval(), ResnetGenerator(**kw).eval()
    if kw.get("norm") == "batch":  # trained-looking running statistics
        for m in [*g_a.modules(), *g_b.modules()]:
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    torch.save(_legacy_state(g_a) if legacy else g_a.state_dict(), tmp_path / "latest_net_G_A.pth")
    torch.save(nn.DataParallel(g_b).state_dict(), tmp_path / "latest_net_G_B.pth")
    return g_a, g_b


@pytest.mark.parametrize("kw", [dict(ngf=8, n_blocks=6), dict(ngf=4, n_blocks=9),
                                dict(ngf=8, n_blocks=2, norm="batch", use_dropout=True),
                                dict(ngf=8, n_blocks=2, norm="batch"), dict(ngf=8, n_blocks=2, legacy=True),
                                dict(ngf=8, n_blocks=2, use_dropout=True, legacy=True)],
                         ids=["resnet6", "resnet9", "batchnorm-dropout", "batchnorm", "legacy-instancenorm",
                              "legacy-instancenorm-dropout"])
def test_imported_generators_match_the_reference_network(tmp_path, capsys, kw):
    g_a, g_b = _reference_pair(tmp_path, **kw)
    out = tmp_path / "horse2zebra.safetensors"
    assert main(["import-cyclegan", str(tmp_path / "latest_net_G_A.pth"), str(tmp_path / "latest_net_G_B.pth"),
                 "--out", str(out), "--domains", "horse", "zebra"]) == 0
    assert f"ResNet-{kw['n_blocks']}" in capsys.readouterr().out
    translator = Translator.from_file(out, device="cpu")
    assert translator.domains == ("horse", "zebra") and translator.meta["model"]["upsample"] == "transpose"
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        for net, direction in ((g_a, "a2b"), (g_b, "b2a")):
            torch.testing.assert_close(translator.translate_tensor(x, direction), net(x), atol=1e-5, rtol=0)


class Exploit:
    """Unpickling this creates the file `path`: the shape of a malicious checkpoint."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    _reference_pair(tmp_path, ngf=4, n_blocks=1)
    weights = {"model.1.weight": torch.zeros(4, 3, 7, 7)}
    proof, marker = tmp_path / "proof", tmp_path / "pwned"
    torch.save({**weights, "payload": Exploit(proof)}, tmp_path / "demo.pth")
    torch.load(tmp_path / "demo.pth", weights_only=False)  # a plain load runs the payload...
    assert proof.exists()
    evil = tmp_path / "latest_net_G_A.pth"
    torch.save({**weights, "payload": Exploit(marker)}, evil)
    code = main(["import-cyclegan", str(evil), str(tmp_path / "latest_net_G_B.pth"), "--out",
                 str(tmp_path / "m.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists() and not (tmp_path / "m.safetensors").exists()  # ...ours does not
    assert f"{evil}: refused: the file holds Python objects that would run code" in err


def test_not_a_reference_generator_is_a_clear_error(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth: not a readable PyTorch checkpoint"):
        load_weights(tmp_path / "junk.pth")
    unet = {"model.model.0.weight": torch.zeros(8, 3, 4, 4)}
    torch.save(unet, tmp_path / "unet.pth")
    assert main(["import-cyclegan", str(tmp_path / "unet.pth"), str(tmp_path / "unet.pth"), "--out",
                 str(tmp_path / "m.safetensors")]) == 2
