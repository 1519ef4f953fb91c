"""Request rows -> the raw feature array `blocks predict` would have read from a file.

Rows arrive validated by the run's `InputSchema` (types, names, row length), so what is left
is what the CSV and image readers do to a file's cells: category names to their codes, missing
cells to NaN (when the model imputes), image files decoded and resized as in training. These
functions hand that work to the same readers (`blocks.data.features.feature_matrix`,
`blocks.data.images.decode_image`), so one row gives one answer whichever way it is sent.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from typing import Any

import numpy as np
import torch

from blocks.builder.model import BlocksModel
from blocks.core.errors import SpecError
from blocks.data.features import feature_matrix
from blocks.data.images import BadImageError, decode_image, image_shape
from blocks.serve.inputs import IMAGE_FIELD, InputSchema, Limits

_ROWS = "rows"  # the source feature_matrix names in its messages ("rows row 3, column 'c': ...")
_DECODE_ERROR = re.compile(r"^rows row (\d+), column (.*?): (.*)$", re.S)


class RowError(Exception):
    """One bad row: its index in the request, the field (column) and what is wrong."""

    def __init__(self, row: int | None, field: str | int | None, message: str,
                 kind: str = "value_error") -> None:
        super().__init__(message)
        self.row, self.field, self.message, self.kind = row, field, message, kind


def rows_to_features(rows: list[dict[str, Any]], model: BlocksModel) -> np.ndarray:
    """Named-column rows (a list of dicts, as JSON objects parse) -> float32 `[N, F]` raw
    features in the run's feature order, by `blocks.data.features.feature_matrix`: the same
    function `blocks predict FILE` and `model.predict_proba(rows)` use, so category names
    become their codes and `None` NaN exactly as there. A bad cell is a `RowError` naming the
    row and column."""
    features = list(model.spec.preprocess.features)
    try:
        with np.errstate(over="ignore"):  # a number beyond float32: refused just below
            x = feature_matrix(rows, model.spec, source=_ROWS)
    except SpecError as err:
        raise _located(err, features) from None
    _check_range(x, features, model, lambda i, j: rows[i][features[j]])
    return x


def _located(err: SpecError, features: list[str]) -> RowError:
    problem = err.first
    match = _DECODE_ERROR.match(problem.message)
    if match is None:
        return RowError(None, None, problem.message, problem.type)
    shown = match.group(2)
    field = next((f for f in features if _shown(f) == shown), None)
    return RowError(int(match.group(1)) - 1, field, match.group(3), problem.type)


def _shown(name: str, limit: int = 40) -> str:  # how decode_columns quotes a column name
    return repr(name if len(name) <= limit else name[:limit] + "...")


def _check_range(x: np.ndarray, features: list[str] | None, model: BlocksModel,
                 sent: Any = None) -> None:
    """A finite number too large for the model's input dtype (float32: 3.4e38, float16: 65504)
    would reach it as inf: refuse it, naming the row and column. `sent(i, j)`: the value as
    the client sent it (`x` may hold it as inf already)."""
    dtype = model.spec.input.torch_dtype
    if not dtype.is_floating_point:
        return
    largest = float(torch.finfo(dtype).max)
    with np.errstate(invalid="ignore"):
        bad = np.abs(x.astype(np.float64)) > largest
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        value = float(sent(i, j) if sent is not None else x[i, j])
        raise RowError(i, features[j] if features else j,
                       f"{value:.4g} is beyond the model's {model.spec.input.dtype} input, "
                       f"whose largest magnitude is {largest:.4g}", "out_of_range")


def arrays_to_features(rows: list[list[Any]], model: BlocksModel) -> np.ndarray:
    """Flat rows of numbers (`None` for missing when the model imputes) -> `[N, size]`, as the
    rows of an `.npz` file's `x` reach `blocks predict`."""
    dtype = model.spec.input.dtype
    np_dtype = np.int64 if dtype == "int64" else np.float64 if dtype == "float64" else np.float32
    try:
        x = np.asarray(rows, dtype=np.float64 if np_dtype != np.int64 else np.int64)
    except OverflowError:
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                if not -(1 << 63) <= value < (1 << 63):
                    raise RowError(i, j, "does not fit in the model's int64 input",
                                   "int64_overflow") from None
        raise
    _check_range(x, None, model)
    return x.astype(np_dtype) if np_dtype != x.dtype else x


def images_to_features(blobs: list[bytes], model: BlocksModel, limits: Limits) -> torch.Tensor:
    """Image files -> float `[N, C, H, W]` in 0..1, decoded, converted and resized the way
    `blocks predict` reads image files (`blocks.data.images.read_images`)."""
    pre = model.spec.preprocess
    shape = image_shape(model.spec)
    resize = pre.images or "crop"
    images = []
    for i, blob in enumerate(blobs):
        _check_pixels(blob, i, limits.max_image_pixels)
        try:
            images.append(decode_image(io.BytesIO(blob), shape, resize))  # type: ignore[arg-type]
        except BadImageError as err:
            reason = str(err).partition("(")[2].rstrip(")") or "unknown format"
            raise RowError(i, IMAGE_FIELD, f"not a readable image ({reason})", "bad_image") from None
    return torch.stack(images).to(torch.float32) / 255.0


def _check_pixels(blob: bytes, row: int, limit: int) -> None:
    from PIL import Image  # optional: Pillow, needed by image runs only (blocks[images])

    try:
        with Image.open(io.BytesIO(blob)) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return  # decode_image names the problem
    if width * height > limit:
        raise RowError(row, IMAGE_FIELD, f"the image is {width} x {height} pixels; at most "
                       f"{limit:,} pixels are decoded", "image_too_large")


def decode_base64(rows: list[dict[str, str]]) -> list[bytes]:
    """The files of `{"image": "<base64>"}` rows; a `data:...;base64,` prefix is dropped."""
    out = []
    for i, row in enumerate(rows):
        text = row[IMAGE_FIELD]
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            out.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise RowError(i, IMAGE_FIELD, "is not valid base64 (the image file's bytes, "
                           "base64-encoded)", "bad_base64") from None
    return out


def features_for(schema: InputSchema, rows: list[Any], model: BlocksModel,
                 limits: Limits) -> np.ndarray | torch.Tensor:
    """The raw batch of a validated JSON body's rows, by the run's kind of input."""
    if schema.kind == "tabular":
        return rows_to_features(rows, model)
    if schema.kind == "image":
        return images_to_features(decode_base64(rows), model, limits)
    return arrays_to_features(rows, model)
