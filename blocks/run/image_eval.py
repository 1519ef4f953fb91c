"""A run's model on a held-out image folder laid out like its training folder (one sub-folder per
class): `blocks evaluate RUN_DIR FOLDER`, `test/` metrics.

Files are decoded as training decoded them (`blocks.data.images`, the run's input size and
resize mode), and class folders are mapped through the run's own label names, never through
folder order: a held-out folder missing a class still gets the right class ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blocks.builder.model import BlocksModel
from blocks.core.errors import Problem, SpecError
from blocks.data.images import ImageFolderDataset, image_shape, list_image_folder
from blocks.run.folder import escape
from blocks.train.trainer import Trainer


def trained_on_images(model: BlocksModel, path: Path) -> str:
    """The run's resize mode; a located error when the run did not train on image files."""
    pre = model.spec.preprocess
    if pre is None or pre.images is None:
        raise SpecError(Problem("", "the run's model was not trained on image files; give a .csv "
                                "or .npz of its inputs", "bad_input", str(path)))
    return pre.images


def evaluate_image_folder(model: BlocksModel, folder: Path, train_spec: Any) -> dict[str, float]:
    """`test/` metrics of the model on every image of `folder` (one sub-folder per class, named
    like the run's labels; a class may be missing, an unknown one is an error naming it)."""
    resize = trained_on_images(model, folder)
    labels = model.label_names()
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise SpecError(Problem("", "holds no class sub-folders; put each class's images in a "
                                "folder named after its label (to predict on loose images, use "
                                "`blocks predict`)", "empty_data", str(folder)))
    for sub in classes:
        if sub.name not in labels:
            shown = ", ".join(labels[:12]) + (" ..." if len(labels) > 12 else "")
            raise SpecError(Problem("", f"class folder {escape(sub.name)!r} is not one of the "
                                    f"run's labels ({shown})", "unknown_label", str(sub)))
    listing = list_image_folder(folder, labels, where="", training=False)
    if not listing.files:
        raise SpecError(Problem("", "its class folders hold no files", "empty_data", str(folder)))
    dataset = ImageFolderDataset(listing.files, listing.targets, image_shape(model.spec), resize)
    return Trainer(model, train_spec, quiet=True).evaluate(dataset, split="test")
