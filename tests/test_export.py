"""Export: the stripped checkpoint, TorchScript and ONNX reproduce the trained model's segmentation exactly."""

import pytest
import torch

from sbcb.export import export_checkpoint
from sbcb.models import build_model, model_spec
from sbcb.train.checkpoint import atomic_save, load_model

pytest.importorskip("segmentation_models_pytorch")

TINY = dict(
    arch="unet", encoder="tu-mobilenetv3_small_050", encoder_depth=3, factory_kwargs={"decoder_channels": [16, 16, 8]}
)


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory):
    """A checkpoint of an SBCB (CASENet) model whose weights differ from a fresh init (one SGD step)."""
    kwargs = dict(num_classes=5, sbcb_head="casenet", **TINY)
    torch.manual_seed(0)
    model = build_model(**kwargs).train()
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 5, (2, 64, 64))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sum(model(x, y).values()).backward()
    opt.step()
    path = tmp_path_factory.mktemp("ckpt") / "last.pt"
    atomic_save({"format": 1, "model": model_spec(kwargs), "state_dict": model.state_dict(), "step": 1}, path)
    return path, model.eval()


def test_stripped_checkpoint_is_the_baseline_architecture(trained_ckpt, tmp_path):
    path, wrapper = trained_ckpt
    report = export_checkpoint(path, stripped=tmp_path / "stripped.pt", size=(64, 64), check=False)
    stripped = load_model(report.stripped_checkpoint)
    baseline = build_model(num_classes=5, sbcb_head="none", **TINY)
    assert type(stripped) is type(baseline)
    assert stripped.state_dict().keys() == baseline.state_dict().keys()
    head_params = sum(p.numel() for p in wrapper.head.parameters())
    assert report.num_params_with_head - report.num_params == head_params > 0
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(stripped(x), wrapper(x))  # eval-mode wrapper = plain segmentation logits


@pytest.mark.onnx
@pytest.mark.slow  # ONNX export + TorchScript trace + two parity runs: ~10-25 s on the shared machine
def test_onnx_and_torchscript_match_pytorch_on_two_shapes(trained_ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    path, wrapper = trained_ckpt
    report = export_checkpoint(path, onnx=tmp_path / "m.onnx", torchscript=tmp_path / "m.ts", size=(64, 64), check=True)
    assert report.onnx_head_nodes == 0
    # the sample 1x3x64x64, a batch of 2 at that size and a second shape 2x3x96x32: dynamic batch, height and width
    assert report.onnx_dynamic_hw and "dynamic height/width" in report.onnx_note
    assert set(report.max_abs_diff) == {
        f"{kind} {shape}" for kind in ("onnx", "torchscript") for shape in ("1x3x64x64", "2x3x64x64", "2x3x96x32")
    }
    assert max(report.max_abs_diff.values()) < 1e-4

    import onnxruntime as ort

    x = torch.randn(3, 3, 32, 128)
    got = ort.InferenceSession(str(report.onnx)).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        ref = wrapper(x)
    assert got.shape == tuple(ref.shape)
    assert float((torch.from_numpy(got) - ref).abs().max()) < 1e-4
