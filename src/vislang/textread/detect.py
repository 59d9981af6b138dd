"""Finding text lines: a quick look at a small copy, and RapidOCR's own detection.

Most photos hold no text, and detection is most of what OCR costs on them: PP-OCR's detector
runs at full resolution (its input's short side at least 736 px). ``probe`` runs it on a copy
``probe_side`` px on the long side (about a sixth of the pixels of a 1600x1200 photo); the
reader then reads the candidate lines that finds, and only an image where some read as text
goes through ``full``, RapidOCR's resolution, which gives the boxes (and so the text) RapidOCR
gives. The probe alone cannot decide: on photos it finds text-like blobs and edges that only
the recogniser tells apart from text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# RapidOCR 3.10's defaults (config.yaml, Det section): kept so the boxes match its own.
DET_LIMIT_SIDE = 736
DET_OPTIONS = dict(thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6,
                   use_dilation=True, score_mode="fast")
# A slightly lower bar than the real pass: 24 px text in a 1600 px photo is 10 px high at the
# probe's scale and scores 0.64 and up there (bench/ocr_quality.py's scenes); blobs it lets
# through cost a recogniser run each, not a full detection.
PROBE_OPTIONS = {**DET_OPTIONS, "box_thresh": 0.4}
PROBE_SIDE = 640
WIDTH_HEIGHT_RATIO, MIN_HEIGHT = 8, 30  # RapidOCR's Global.width_height_ratio, min_height


@dataclass
class Detection:
    boxes: np.ndarray  # float32[N, 4, 2]: corners in the detector's input image, reading order
    scores: list[float]


class Detector:
    """Text-line boxes of a BGR image: a probe at low resolution and the full pass."""

    def __init__(self, session, probe_side: int | None = PROBE_SIDE):
        from rapidocr.ch_ppocr_det.utils import DBPostProcess, DetPreProcess

        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.probe_side = probe_side
        self.full_steps = (DetPreProcess(DET_LIMIT_SIDE, "min"), DBPostProcess(**DET_OPTIONS))
        self.probe_steps = (DetPreProcess(probe_side or 1, "max"),
                            DBPostProcess(**PROBE_OPTIONS))

    def wants_probe(self, image: np.ndarray) -> bool:
        """Whether a probe costs less than the full pass: not for images already small."""
        return bool(self.probe_side) and max(image.shape[:2]) > 1.25 * self.probe_side

    def probe(self, image: np.ndarray) -> Detection:
        """Candidate line boxes from the small copy, in ``image``'s pixels."""
        return self._run(image, *self.probe_steps)

    def full(self, image: np.ndarray) -> Detection:
        """Line boxes of ``image`` (BGR uint8) as RapidOCR finds them, in its pixels."""
        from rapidocr.utils.process_img import apply_vertical_padding

        # RapidOCR pads a wide strip (a banner) with black rows: scaling its short side up to
        # 736 px would otherwise make a detector input of tens of thousands of pixels across.
        padded, record = apply_vertical_padding(image, {}, WIDTH_HEIGHT_RATIO, MIN_HEIGHT)
        found = self._run(padded, *self.full_steps)
        if top := record["padding_1"]["top"]:
            found.boxes[..., 1] = np.clip(found.boxes[..., 1] - top, 0, image.shape[0])
        return found

    def _run(self, image: np.ndarray, prepare, postprocess) -> Detection:
        pixels = prepare(image)
        if pixels is None:  # too small to scale to a multiple of 32
            return _none()
        heatmap = self.session.run(None, {self.input_name: pixels})[0]
        boxes, scores = postprocess(heatmap, image.shape[:2])
        if len(boxes) == 0:
            return _none()
        order = _reading_order(boxes)
        return Detection(np.asarray(boxes, np.float32)[order], [scores[i] for i in order])


def _reading_order(boxes: np.ndarray) -> np.ndarray:
    """The order of RapidOCR's TextDetector.sorted_boxes, as a permutation (it sorts boxes
    only, and the scores must follow them): top to bottom by first corner, corners less than
    10 px apart in y count as one line, read left to right."""
    y_order = np.argsort(boxes[:, 0, 1], kind="stable")
    lines = np.concatenate([[0], np.cumsum(np.diff(boxes[y_order, 0, 1]) >= 10)])
    return y_order[np.lexsort((boxes[y_order, 0, 0], lines))]


def _none() -> Detection:
    return Detection(np.zeros((0, 4, 2), np.float32), [])
