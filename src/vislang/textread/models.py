"""The OCR models: RapidOCR's shipped ONNX files, each opened once as an ONNX Runtime session.

The ``rapidocr`` wheel carries PP-OCRv6 text detection and recognition and the mobile 0/180
degree line classifier (about 31 MB), so reading text needs no download. vislang runs them with
its own batch pipeline (see reader.py) but keeps RapidOCR's pre- and post-processing, so the
text it reads is the text RapidOCR reads.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from vislang.errors import InputError

INSTALL_HINT = "pip install 'vislang[ocr]'"

DETECTOR_FILE = "PP-OCRv6_det_small.onnx"
RECOGNIZER_FILE = "PP-OCRv6_rec_small.onnx"
CLASSIFIER_FILE = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"

_LOCK = threading.Lock()


class OcrNotInstalledError(InputError):
    """The optional OCR dependencies (rapidocr and its model files) are missing."""


def require_rapidocr():
    """The ``rapidocr`` package, or a one-line error naming the install command."""
    try:
        import rapidocr
    except ImportError as exc:
        raise OcrNotInstalledError(
            f"reading text in images needs the OCR extra ({exc}): {INSTALL_HINT}") from None
    return rapidocr


def model_dir() -> Path:
    return Path(require_rapidocr().__file__).parent / "models"


@dataclass(frozen=True)
class OcrModels:
    """The three ONNX Runtime sessions and the recogniser's character list."""

    detector: object
    recognizer: object
    classifier: object
    characters: tuple[str, ...]  # the recogniser's alphabet, from its ONNX metadata


def load_models(threads: int | None = None) -> OcrModels:
    """The sessions, made on first use and shared by every reader in the process: making one
    parses and optimises its graph (about a second), so a reader per call would pay it again."""
    with _LOCK:
        return _load(threads or os.cpu_count() or 1)


@functools.cache
def _load(threads: int) -> OcrModels:
    folder = model_dir()
    paths = [folder / name for name in (DETECTOR_FILE, RECOGNIZER_FILE, CLASSIFIER_FILE)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise OcrNotInstalledError(
            f"the rapidocr install in {folder} lacks {', '.join(missing)}; reinstall it: "
            f"pip install --force-reinstall 'rapidocr>=3.10'")
    detector, recognizer, classifier = (_session(p, threads) for p in paths)
    meta = recognizer.get_modelmeta().custom_metadata_map
    return OcrModels(detector, recognizer, classifier, tuple(meta["character"].splitlines()))


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads  # one pool the size of the machine per session
    options.inter_op_num_threads = 1  # these graphs are chains: nothing to run side by side
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
