"""Mapped OpenCLIP checkpoints on OpenVINO in bf16 and int8, against torch fp32.

bf16 runs only where OpenVINO and the CPU have bf16 units (``supported_precisions``, the rule
every engine test follows); elsewhere (AVX2) asking for it must be refused with the one line
that says what the machine can run, never emulated silently.
"""

from __future__ import annotations

import pytest

import vislang
from vislang.datasets.shapes import generate_scenes
from vislang.errors import InputError
from vislang.runtime import installed, supported_precisions

from test_openclip import VIT_B32_LIKE, _reference, _save, open_clip_model  # noqa: F401

pytestmark = pytest.mark.skipif(not installed("openvino"), reason="needs the openvino extra")

TEXTS = ["a red circle", "two blue squares and a yellow triangle", "a green triangle", "a dog"]
BOUNDS = {"bf16": 0.999, "int8": 0.98}  # min cosine with torch fp32 (issue 19)


@pytest.fixture(scope="module")
def mapped(open_clip_model, tmp_path_factory):  # noqa: F811 (the imported fixture)
    """A ViT-B/32-layout OpenCLIP checkpoint and its torch fp32 features."""
    reference = _reference(open_clip_model, VIT_B32_LIKE, seed=19)
    directory = _save(reference, VIT_B32_LIKE, tmp_path_factory.mktemp("openclip-ov"))
    model = vislang.load(str(directory))
    images = [s.image for s in generate_scenes(8, seed=1919)]
    return directory, images, model.embed_images(images), model.embed_texts(TEXTS)


@pytest.mark.parametrize("precision", list(BOUNDS))
def test_openvino_low_precision_stays_close_to_fp32(mapped, precision):
    directory, images, fp32_images, fp32_texts = mapped
    if precision not in supported_precisions("openvino"):
        with pytest.raises(InputError, match=f"openvino cannot run {precision} on this CPU"):
            vislang.load(str(directory), backend="openvino", precision=precision)
        return
    model = vislang.load(str(directory), backend="openvino", precision=precision)
    assert model.backend == f"openvino/{precision}"
    image_cos = (model.embed_images(images) * fp32_images).sum(axis=1)
    text_cos = (model.embed_texts(TEXTS) * fp32_texts).sum(axis=1)
    assert image_cos.min() >= BOUNDS[precision], image_cos
    assert text_cos.min() >= BOUNDS[precision], text_cos
