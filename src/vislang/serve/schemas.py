"""The JSON shapes of the API: what the OpenAPI document promises a client."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    error: str = Field(description="What was wrong and what to do, in one sentence.")


class ReadWord(BaseModel):
    text: str
    box: list[list[float]] = Field(description="4 corners (x, y) in image pixels, clockwise "
                                   "from the top-left; cut from the line's box by character "
                                   "position.")


class ReadLine(BaseModel):
    text: str = Field(description="A line of text read in the image (vislang index --ocr).")
    box: list[list[float]] = Field(description="The line's 4 corners (x, y) in image pixels, "
                                   "clockwise from the top-left.")
    words: list[ReadWord] = Field(description="The parts of the line the query's words or the "
                                  "text filter matched.")


class Hit(BaseModel):
    path: str = Field(description="The file's absolute path, as the index stores it.")
    score: float = Field(description="Cosine similarity to the query.")
    taken: float | None = Field(None, description="EXIF capture time, else mtime (unix s).")
    caption: str | None = Field(None, description="The caption stored in the index, if any.")
    ocr: list[ReadLine] | None = Field(None, description="The lines of text read in the image "
                                       "that the query's words or the text filter matched.")
    thumbnail: str = Field(description="URL of a JPEG thumbnail (256 px).")
    image: str = Field(description="URL of the full image.")
    id: str | None = Field(None, description="The content's id, for POST /api/feedback; null "
                           "when the search was not recorded.")


class SearchPage(BaseModel):
    query: str | None = Field(description="The text query; null for an image query.")
    offset: int
    k: int
    results: list[Hit]
    more: bool = Field(description="Whether a next page (offset + k) has results.")
    search_id: int | None = Field(None, description="The recorded search, for POST "
                                  "/api/feedback; null when searches are not recorded "
                                  "(vislang serve --no-feedback, or no text query).")


class FeedbackIn(BaseModel):
    """A result of a recorded search that the user opened or marked "this one"."""

    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not ignored
    search_id: int = Field(ge=1, le=2**63 - 1, description="search_id from GET /api/search.")
    id: str = Field(min_length=1, max_length=64, pattern="^[0-9a-f]+$",
                    description="The result's id from the same search.")
    kind: Literal["opened", "this one"]


class FeedbackOut(BaseModel):
    recorded: bool
    ignored: str | None = Field(None, description="Why the click was not recorded (unknown "
                                "search, not shown in it, or no longer in the index); "
                                "ignored clicks are counted in vislang feedback stats.")


class DupFile(BaseModel):
    path: str
    score: float = Field(description="Its best similarity to another file of the group.")
    taken: float | None = Field(None, description="EXIF capture time, else mtime (unix s).")
    size: int | None = Field(None, description="Bytes on disk; null if it is gone.")
    thumbnail: str
    image: str


class DupGroup(BaseModel):
    files: list[DupFile]


class DupsOut(BaseModel):
    threshold: float
    groups: list[DupGroup] = Field(description="Largest group first.")


class Point(BaseModel):
    x: int
    y: int


class SaliencyOut(BaseModel):
    query: str
    method: str
    width: int = Field(description="The map's width: the image, shrunk to the size limit.")
    height: int
    min: float
    max: float
    argmax: Point = Field(description="Where the phrase matches best, in map pixels.")
    seconds: float
    overlay: str = Field(description="The overlay as a data: URL (PNG).")


class CaptionOut(BaseModel):
    caption: str
    model: str


class AnswerOut(BaseModel):
    question: str
    answer: str
    model: str
    note: str | None = Field(None, description="Set when the question was longer than the "
                                                "model reads, saying how much it read.")


class Prediction(BaseModel):
    label: str
    prob: float


class ClassifyOut(BaseModel):
    predictions: list[Prediction] = Field(description="Every label, most likely first.")
    model: str | None


class Queue(BaseModel):
    workers: int
    pending: int
    max_pending: int


class StatusOut(BaseModel):
    index: dict
    models: dict[str, str | None]
    engines: dict[str, str | None] = Field(description="The engine each model runs on, as "
                                           "backend/precision (openvino/bf16); null until a "
                                           "request first uses that model.")
    limits: dict[str, int]
    queues: dict[str, Queue]
    auth: bool = Field(description="Whether requests need a token.")
    feedback: bool = Field(description="Whether searches and clicks are recorded in the index "
                           "(off under vislang serve --no-feedback).")
    watch: dict | None = Field(None, description="Under serve --watch: the folders watched, "
                               "paths queued, batches done and the last one's time, problems.")
