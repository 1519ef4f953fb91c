"""Experiment tracking: `train.loggers: [csv, tensorboard, mlflow]`.

The run folder's metrics.csv / metrics.jsonl are always written (they are the `csv` logger, and
`blocks report` reads them). TensorBoard gets scalars, hyperparameters and the model graph through
`torch.utils.tensorboard` (`blocks[tensorboard]`); MLflow gets params, per-epoch metrics and the
run folder as artifacts (`blocks[mlflow]`), in `./mlruns` or `MLFLOW_TRACKING_URI`.

A tracker is a side channel: when one fails (not installed, a full disk, a server away) it is
reported once and training goes on without it. Under DDP, rank 0 alone logs.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch

INSTALL = {"tensorboard": "pip install 'blocks[tensorboard]'", "mlflow": "pip install 'blocks[mlflow]'"}
MLRUNS = "mlruns"  # the local MLflow store when MLFLOW_TRACKING_URI is not set
TENSORBOARD_DIR = "tensorboard"  # inside the run folder


class LoggerWarning(UserWarning):
    """A tracker failed; training went on without it."""


def epoch_end(trainer: Any, record: dict[str, Any]) -> None:
    """The trainer's one hook: send this epoch's record to every tracker the spec names."""
    if not trainer.is_main:
        return
    trackers = trainer.__dict__.get("_trackers")
    if trackers is None:
        trackers = trainer.__dict__["_trackers"] = _open(trainer)
    for tracker in list(trackers):
        _guarded(trackers, tracker, "log_epoch", trainer, record)
    if trainer.epoch >= trainer.spec.epochs or trainer.stopped_early:
        for tracker in list(trackers):
            _guarded(trackers, tracker, "end_of_training", trainer)


def finish(trainer: Any, run_dir: Path | None = None) -> None:
    """After the run folder is complete: upload it as artifacts and close every tracker."""
    for tracker in list(trainer.__dict__.get("_trackers") or []):
        _guarded(trainer._trackers, tracker, "close", run_dir)
    trainer.__dict__["_trackers"] = []


def _open(trainer: Any) -> list[Any]:
    trackers = []
    for name in dict.fromkeys(trainer.spec.loggers):
        if name == "csv":
            continue  # History.write, always on
        try:
            trackers.append(TRACKERS[name](trainer))
        except Exception as err:  # noqa: BLE001 - a tracker never stops training
            _report(name, err)
    return trackers


def _guarded(trackers: list[Any], tracker: Any, method: str, *args: Any) -> None:
    try:
        getattr(tracker, method)(*args)
    except Exception as err:  # noqa: BLE001 - reported once, then the tracker is dropped
        trackers.remove(tracker)
        _report(tracker.name, err)
        with contextlib.suppress(Exception):  # it failed already; the report says so
            tracker.close(None)


def _report(name: str, err: BaseException) -> None:
    hint = f" ({INSTALL[name]})" if isinstance(err, ImportError) and name in INSTALL else ""
    warnings.warn(f"the {name} logger failed and is switched off; training goes on: "
                  f"{type(err).__name__}: {err}{hint}", LoggerWarning, stacklevel=3)


def hyperparameters(trainer: Any) -> dict[str, str | int | float | bool]:
    """The train spec and model facts, flattened to `optimizer.lr: 0.001` pairs."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif value is None or isinstance(value, bool | int | float | str):
            flat[prefix] = "none" if value is None else value
        else:
            flat[prefix] = str(value)

    walk("", trainer.spec.model_dump(mode="json", exclude={"loggers"}))
    flat["model.name"] = trainer.model.spec.name or "model"
    flat["model.parameters"] = sum(p.numel() for p in trainer.model.parameters())
    return flat


def _scalars(record: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in record.items()
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool)}


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, trainer: Any) -> None:
        if trainer.run_dir is None:
            raise ValueError("tensorboard logs into the run folder: Trainer(..., run_dir=...)")
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(log_dir=str(Path(trainer.run_dir) / TENSORBOARD_DIR))
        self._graph(trainer)

    def _graph(self, trainer: Any) -> None:
        """The model graph, traced once in eval mode (no batchnorm statistics change)."""
        model = trainer.model
        spec = model.spec
        dtype = torch.float32 if spec.preprocess is not None else spec.input.torch_dtype
        example = torch.zeros((1, *spec.sample_shape), dtype=dtype, device=trainer.device)
        was_training = model.training
        model.eval()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about data-dependent branches
                self.writer.add_graph(model, example, use_strict_trace=False)
        except Exception:  # noqa: BLE001 - a graph is a nicety: scalars still go out
            pass
        finally:
            model.train(was_training)

    def log_epoch(self, trainer: Any, record: dict[str, Any]) -> None:
        for key, value in _scalars(record).items():
            self.writer.add_scalar(key, value, global_step=record["epoch"])
        self.writer.flush()

    def end_of_training(self, trainer: Any) -> None:
        final = {f"hparam/{k}": v for k, v in _scalars(trainer.history.last).items()
                 if k.startswith(("val/", "train/"))}
        self.writer.add_hparams(hyperparameters(trainer), final, run_name=".")
        self.writer.flush()

    def close(self, run_dir: Path | None) -> None:
        self.writer.close()


PROBE_S = 5.0  # how long a tracking server may take to accept a connection before training starts
# MLflow's defaults retry a request for minutes (7 retries, backoff 2): a server that goes away
# mid-run would stall every epoch. These bound one call to well under a minute.
MLFLOW_HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                      "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _server_reachable(uri: str) -> None:
    """A TCP connection to the tracking server within `PROBE_S`, or a `ConnectionError` naming
    it (the tracker is then switched off with a warning; training does not wait)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConnectionError(f"MLFLOW_TRACKING_URI={uri!r} has no valid port") from None
    try:
        with socket.create_connection((host, port), timeout=PROBE_S):
            pass
    except OSError as err:
        raise ConnectionError(f"no MLflow tracking server answers at {uri} (MLFLOW_TRACKING_URI) "
                              f"within {PROBE_S:g} s: {err.strerror or err}") from None


class MlflowTracker:
    name = "mlflow"

    def __init__(self, trainer: Any) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if uri and uri.startswith(("http://", "https://")):
            _server_reachable(uri)
            for key, value in MLFLOW_HTTP_LIMITS.items():  # the user's own settings win
                os.environ.setdefault(key, value)
        artifacts = None
        if not uri:
            root = Path(MLRUNS).resolve()
            root.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{root / 'mlflow.db'}"
            artifacts = (root / "artifacts").as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        experiment_name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "blocks")
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = (experiment.experiment_id if experiment is not None else
                         self.client.create_experiment(experiment_name, artifact_location=artifacts))
        run_name = Path(trainer.run_dir).name if trainer.run_dir is not None else None
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        params = [Param(k, str(v)[:6000]) for k, v in hyperparameters(trainer).items()]
        for start in range(0, len(params), 100):  # MLflow takes 100 params per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        self.finished = False
        self.closed = False
        atexit.register(self._abandoned)  # training raised: the run is not left "RUNNING"

    def _abandoned(self) -> None:
        if not self.finished and not self.closed:
            with contextlib.suppress(Exception):
                self.client.set_terminated(self.run_id, "FAILED")

    def log_epoch(self, trainer: Any, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(key, value, now, record["epoch"]) for key, value in _scalars(record).items()])

    def end_of_training(self, trainer: Any) -> None:
        self.client.set_terminated(self.run_id, "FINISHED")
        self.finished = True

    def close(self, run_dir: Path | None) -> None:
        if run_dir is not None and Path(run_dir).is_dir():
            self.client.log_artifacts(self.run_id, str(run_dir))
        if not self.finished:
            self.client.set_terminated(self.run_id, "KILLED")
        self.closed = True
        atexit.unregister(self._abandoned)


TRACKERS = {"tensorboard": TensorBoardTracker, "mlflow": MlflowTracker}
