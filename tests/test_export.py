import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from test_inference import make_model
from translate.cli import main


@pytest.mark.parametrize("fields", [{}, {"generator": "unet", "unet_depth": 3, "g_norm": "batch"},
                                    {"residual": True}, {"residual": True, "mask": True}],
                         ids=["resnet", "unet", "residual", "residual-mask"])
def test_onnx_export_has_dynamic_size_and_matches_pytorch(tmp_path, capsys, fields):
    translator = make_model(tmp_path / "model.safetensors", **fields)
    path = tmp_path / "out" / "model.onnx"
    assert main(["export", str(tmp_path / "model.safetensors"), "--onnx", str(path), "--direction", "b2a"]) == 0
    assert "onnxruntime matches PyTorch" in capsys.readouterr().out
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (image,), (translated,) = session.get_inputs(), session.get_outputs()
    assert image.name == "image" and isinstance(image.shape[2], str) and isinstance(image.shape[3], str)
    for shape in ((1, 3, 37, 53), (2, 3, 64, 48), (1, 3, 8, 9)):
        x = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
        got = session.run(None, {"image": x.numpy()})[0]
        want = translator.translate_tensor(x, "b2a").numpy()
        assert got.shape == shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["direction"] == "b2a" and (meta["source_domain"], meta["target_domain"]) == ("dogs", "cats")
    assert json.loads(meta["model"]) == translator.meta["model"]


def test_export_of_a_missing_model_is_a_usage_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.safetensors"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "nope.safetensors: no such model file" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_release_copy_has_fp16_weights_new_names_and_the_same_translation(tmp_path):
    translator = make_model(tmp_path / "model.safetensors")
    out = tmp_path / "release.safetensors"
    assert main(["export", str(tmp_path / "model.safetensors"), "--out", str(out), "--fp16",
                 "--domains", "Noto", "Twemoji", "--task", "style"]) == 0
    from translate.checkpoint import read_model
    from translate.inference import Translator
    nets, meta = read_model(out)
    assert all(v.dtype == torch.float16 for state in nets.values() for v in state.values() if v.is_floating_point())
    assert meta["domains"] == ["Noto", "Twemoji"] and meta["task"] == "style"
    assert meta["model"] == translator.meta["model"]
    assert out.stat().st_size < 0.6 * (tmp_path / "model.safetensors").stat().st_size
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    half = Translator.from_file(out).translate_tensor(x)
    assert (half - translator.translate_tensor(x)).abs().max() < 0.02
