"""`blocks predict RUN_DIR FOLDER --skip-bad-files`: predictions for the image files that decode,
and the list of those that do not (with the reason), instead of no rows at all.

Files are decoded as training decoded them (`blocks.data.images.decode_image`); the rows are
`blocks.run.predicting.predict_run`'s, so a good file gets the answer it gets without skipping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from blocks.builder.model import BlocksModel
from blocks.core.errors import Problem, SpecError
from blocks.data.image_check import decode_skipping, image_files
from blocks.data.images import image_shape
from blocks.run.folder import escape, load
from blocks.run.image_eval import trained_on_images
from blocks.run.predicting import Predictions, predict_run


@dataclass
class ImagePredictions:
    """Predictions for the image files that decoded, the files they are for (same order), and
    the files that did not decode, each with the reason."""

    predictions: Predictions
    files: list[Path]
    bad: list[tuple[Path, str]]

    def file_names(self, root: Path) -> list[str]:
        """The predicted files relative to `root` (escaped), in the predictions' order."""
        base = root if root.is_dir() else root.parent
        return [escape(str(f.relative_to(base))) if f.is_relative_to(base) else escape(str(f))
                for f in self.files]

    def table(self, root: Path) -> tuple[list[str], list[list[Any]]]:
        """The predictions' table with a first `file` column (relative to `root`): rows no
        longer follow the folder's listing one to one once files are skipped."""
        header, rows = self.predictions.table()
        return ["file", *header], [[name, *row] for name, row in
                                   zip(self.file_names(root), rows, strict=True)]


def predict_image_files(run: BlocksModel | str | Path, path: str | Path) -> ImagePredictions:
    """Labels and probabilities for an image file or folder (as `blocks predict` reads it),
    skipping files that are not readable images; at least one must be."""
    model = run if isinstance(run, BlocksModel) else load(run)
    path = Path(path)
    resize = trained_on_images(model, path)
    if not path.exists():
        raise SpecError(Problem("", "input file does not exist", "file_not_found", str(path)))
    files = image_files(path)
    if not files:
        raise SpecError(Problem("", "no image files here", "empty_data", str(path)))
    images, good, bad = decode_skipping(files, image_shape(model.spec), resize)
    if not images:
        raise SpecError(Problem("", f"none of the {len(files)} image file(s) is readable "
                                f"(first: {bad[0][1]})", "bad_image", str(path)))
    x = torch.stack(images).to(torch.float32) / 255.0
    return ImagePredictions(predict_run(model, x), good, bad)
