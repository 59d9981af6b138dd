"""Reading text lines: crop each box, turn upside-down lines round, recognise in batches.

Every line of every image in a batch goes through the classifier and the recogniser together,
sorted by shape: a batch of lines of similar width wastes little on padding, and one model run
over 32 lines costs far less than six runs over 6 (RapidOCR's batches, per image).
The crops, their resizing and normalisation, and the decoding are RapidOCR's own, so a line
reads the same here as there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

REC_HEIGHT, REC_MIN_WIDTH = 48, 320  # RapidOCR's Rec.rec_img_shape [3, 48, 320]
CLS_SHAPE = (48, 192)  # the mobile classifier's input (Cls.cls_image_shape)
CLS_THRESH = 0.9  # turn a line round only when the classifier is this sure (Cls.cls_thresh)
# Batch sizes: enough lines to keep ONNX Runtime's threads busy; the recogniser's input is
# lines x 48 x width floats, so 32 lines of 1600 px stay under 30 MB.
REC_BATCH, CLS_BATCH = 32, 64


@dataclass
class LineText:
    text: str
    confidence: float


def crop_lines(image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """Each box of ``image`` straightened into an upright strip (tall ones turned on their
    side, so vertical lines of rotated text read across)."""
    from rapidocr.utils.process_img import get_rotate_crop_image

    return [get_rotate_crop_image(image, box.astype(np.float32).copy()) for box in boxes]


class Recognizer:
    def __init__(self, recognizer, classifier, characters: tuple[str, ...]):
        from rapidocr.ch_ppocr_rec.utils import CTCLabelDecode

        self.rec, self.cls = recognizer, classifier
        self.rec_input = recognizer.get_inputs()[0].name
        self.cls_input = classifier.get_inputs()[0].name
        # A copy: CTCLabelDecode inserts its blank and space into the list it is given, and
        # the list is shared by every reader (a second reader would decode shifted by one).
        self.decode = CTCLabelDecode(character=list(characters))

    def __call__(self, crops: list[np.ndarray], orient: bool = True) -> list[LineText]:
        """The text of each crop (BGR uint8), in order."""
        if not crops:
            return []
        if orient:
            crops = self.upright(crops)
        results: list[LineText | None] = [None] * len(crops)
        for batch in _by_width(crops, REC_BATCH):
            for i, (text, score) in zip(batch, self._read([crops[i] for i in batch])):
                results[i] = LineText(text, float(score))
        return results

    def upright(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """The crops with lines the classifier finds upside down turned round."""
        crops = list(crops)
        for batch in _by_width(crops, CLS_BATCH):
            pixels = np.stack([_cls_pixels(crops[i]) for i in batch])
            probs = self.cls.run(None, {self.cls_input: pixels})[0]
            for i, p in zip(batch, probs):
                if p.argmax() == 1 and p[1] > CLS_THRESH:  # labels ["0", "180"]
                    crops[i] = cv2.rotate(crops[i], cv2.ROTATE_180)
        return crops

    def _read(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        ratios = [c.shape[1] / c.shape[0] for c in crops]
        widest = max(REC_MIN_WIDTH / REC_HEIGHT, *ratios)
        pixels = np.stack([_rec_pixels(c, widest) for c in crops])
        preds = self.rec.run(None, {self.rec_input: pixels})[0]
        lines, _ = self.decode(preds, wh_ratio_list=ratios, max_wh_ratio=widest)
        return lines


def _by_width(crops: list[np.ndarray], size: int) -> list[list[int]]:
    """Indices of ``crops`` in batches of ``size``, narrowest first."""
    order = np.argsort([c.shape[1] / c.shape[0] for c in crops], kind="stable")
    return [order[i:i + size].tolist() for i in range(0, len(order), size)]


def _rec_pixels(crop: np.ndarray, wh_ratio: float) -> np.ndarray:
    """RapidOCR's TextRecognizer.resize_norm_img: 48 px high, left-aligned, zero padded to
    the batch's widest ratio, scaled to [-1, 1]."""
    width = int(REC_HEIGHT * wh_ratio)
    h, w = crop.shape[:2]
    resized_w = min(width, int(math.ceil(REC_HEIGHT * w / h)))
    out = np.zeros((3, REC_HEIGHT, width), np.float32)
    resized = cv2.resize(crop, (resized_w, REC_HEIGHT)).astype(np.float32)
    out[:, :, :resized_w] = resized.transpose(2, 0, 1) / 127.5 - 1.0
    return out


def _cls_pixels(crop: np.ndarray) -> np.ndarray:
    """RapidOCR's TextClassifier.resize_norm_img: 48x192, left-aligned, zero padded."""
    height, width = CLS_SHAPE
    h, w = crop.shape[:2]
    resized_w = min(width, int(math.ceil(height * w / h)))
    out = np.zeros((3, height, width), np.float32)
    resized = cv2.resize(crop, (resized_w, height), interpolation=cv2.INTER_LINEAR)
    out[:, :, :resized_w] = resized.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    return out
