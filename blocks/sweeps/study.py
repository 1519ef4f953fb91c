"""`sweep`: a hyperparameter search on Optuna over any recipe keys (what `blocks sweep` does).

Each trial draws the space's values, applies them to the recipe like `--set` and trains it
with `run_recipe` (exactly what `blocks train` runs) into `trials/trial-NNNN/`; the trainer's
per-epoch hook reports the metric to Optuna, and a trial the pruner stops raises
`optuna.TrialPruned` from there, leaving its partial run folder marked `pruned`. A trial that
fails (a drawn config the recipe refuses, a NaN loss, any exception) is recorded with its error
and the sweep goes on.

The study is stored in `study.db` (SQLite) in the sweep folder unless `storage` names another
database; several processes or machines given the same storage and study name share it.
`trials` is the study's total: a sweep started again runs only what is missing. A trial left
running by a killed (or interrupted) process is marked failed and re-run once with the same
parameters: at once when the process ran on this machine (its pid is gone), otherwise when its
heartbeat is older than `grace_s`.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import inspect
import json
import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blocks.core.errors import Problem, SpecError
from blocks.run.folder import RUN_INFO, read_info, write_info
from blocks.run.training import run_recipe
from blocks.run.validate import check_recipe, load_recipe
from blocks.spec.metric_names import record_metric_names
from blocks.spec.recipe import Recipe
from blocks.sweeps import report
from blocks.sweeps.space import Space, read_space, space_problems, trial_recipe

STUDY_DB = "study.db"
PRUNERS = ("median", "halving", "none")
INSTALL = "pip install 'blocks[sweep]'"


class TrialFailed(Exception):
    """A trial that could not finish; its reason is the trial's `error` attribute."""


@dataclass
class SweepResult:
    """What `sweep` produced: the folder, the Optuna study, sweep.json's content, the best."""

    out: Path
    study: Any
    info: dict[str, Any]

    @property
    def best(self) -> dict[str, Any] | None:
        """The best complete trial: number, value, params, run folder (relative to `out`)."""
        return self.info.get("best")

    @property
    def best_run(self) -> Path | None:
        best = self.best
        return self.out / best["run"] if best and best.get("run") else None


def sweep(recipe: str | os.PathLike[str] | Recipe, space: str | os.PathLike[str] | Mapping[str, Any],
          *, trials: int = 20, out: str | os.PathLike[str] | None = None,
          storage: str | Any | None = None, study: str | None = None, pruner: str | Any = "median",
          metric: str = "val/accuracy", direction: str | None = None,
          timeout: float | None = None, seed: int | None = None, sampler: Any = None,
          enqueue: Sequence[Mapping[str, Any]] = (), quiet: bool = True, plot: bool = True,
          heartbeat_s: int = 60, grace_s: int = 180) -> SweepResult:
    """Search `space` (a YAML file or `{key: {log_uniform|uniform|int|choice: ...}}`) over
    `recipe` until the study holds `trials` finished trials; returns the result with the best.

    `out` defaults to `sweeps/<recipe name>`; `storage` to SQLite in it (any Optuna storage
    URL or object otherwise); `study` to the folder's name. `pruner`: "median" (Optuna's
    MedianPruner: from epoch 2, once 3 trials finished), "halving" (successive halving), "none",
    or an Optuna pruner. `direction` follows the metric (`loss` minimises). `enqueue`: values
    to try first (e.g. the recipe's own). The whole space is checked before the first trial.
    """
    optuna = _optuna()
    loaded = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    if isinstance(recipe, Recipe):
        check_recipe(loaded)
    space, problems = read_space(space)
    problems += space_problems(loaded, space)
    if problems:  # the whole space, before the first trial, in the file's order
        raise SpecError(sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
    direction = _direction(loaded, metric, direction)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise SpecError(Problem("", f"must be a positive integer, got {trials!r}",
                                "bad_argument", "--trials"))
    for values in enqueue:
        unknown = [k for k in values if k not in space.describe()]
        if unknown:
            raise SpecError(Problem("", f"enqueue names {unknown[0]!r}, which the space does not "
                                    "search", "bad_argument"))
    name = (Path(loaded.source_path).stem if loaded.source_path is not None
            else loaded.model.name or "sweep")
    out = Path(out) if out is not None else Path("sweeps") / name
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    url = storage if storage is not None else f"sqlite:///{(out / STUDY_DB).resolve()}"
    study_name = study or out.resolve().name
    logger = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial's line is printed here
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 4 and 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage_obj = _storage(optuna, url, heartbeat_s, grace_s)
        made = optuna.create_study(storage=storage_obj, study_name=study_name,
                                   load_if_exists=True, direction=direction,
                                   sampler=sampler or optuna.samplers.TPESampler(seed=seed),
                                   pruner=_pruner(optuna, pruner))
        _check_study(made, loaded, space, metric, direction, out)
        for values in enqueue:  # skipped when a resumed study has them already
            made.enqueue_trial(space.encode(values), skip_if_exists=True)
    except BaseException:
        optuna.logging.set_verbosity(logger)
        raise
    shown_url = _shown_url(url)
    context = _Context(optuna, made, loaded, space, out, metric, quiet)

    def write() -> dict[str, Any]:
        info = report.summary(made, out=out, storage=shown_url, metric=metric,
                              space=space.describe(), target=trials)
        report.write_summary(out, info, plot=plot)
        return info

    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        write()
        while True:
            _fail_killed_trials(optuna, made, out)
            if _used(optuna, made) >= trials or deadline is not None and time.monotonic() >= deadline:
                break
            made.optimize(context.objective, n_trials=1, catch=(TrialFailed,),
                          callbacks=[lambda s, t: context.told(t, write())])
    finally:
        optuna.logging.set_verbosity(logger)
        info = write()
    return SweepResult(out, made, info)


class _Context:
    """One process's side of a sweep: the objective and what it prints after each trial."""

    def __init__(self, optuna: Any, study: Any, recipe: Recipe, space: Space, out: Path,
                 metric: str, quiet: bool) -> None:
        self.optuna, self.study, self.recipe, self.space = optuna, study, recipe, space
        self.out, self.metric, self.quiet = out, metric, quiet

    def objective(self, trial: Any) -> float:
        me = report.worker()
        trial.set_user_attr("host", me["host"])
        trial.set_user_attr("worker", me)
        run = report.trial_dir(self.out, trial.number)
        trial.set_user_attr("run", run.relative_to(self.out).as_posix())
        values = {p.key: p.suggest(trial) for p in self.space.params}
        try:
            recipe = trial_recipe(self.recipe, self.space, values)
        except SpecError as err:  # a drawn combination the recipe refuses: this trial only
            raise self._failed(trial, run, f"the drawn values make an invalid recipe: {err}") from None
        pruning = _Pruning(self.optuna, trial, self.metric)
        try:
            result = run_recipe(recipe, run, quiet=True, plots=False, callbacks=[pruning])
        except self.optuna.TrialPruned:
            _mark(run, status="pruned", trial=trial.number, epoch=pruning.epoch,
                  metric=self.metric, value=pruning.value)
            raise
        except KeyboardInterrupt:  # re-run with the same values when the sweep starts again
            _mark(run, status="interrupted", trial=trial.number)
            _retry(self.optuna, self.study, trial.number, trial.params)
            raise
        except Exception as err:  # noqa: BLE001 - any failure is this trial's, not the sweep's
            raise self._failed(trial, run, f"{type(err).__name__}: {err}") from err
        info = result.info
        record = result.history.to_list()[info["weights_epoch"] - 1]  # what the weights score
        value = record.get(self.metric)
        if value is None or not math.isfinite(value):
            raise self._failed(trial, run, f"{self.metric} is {value} at epoch {record['epoch']}")
        write_info(run, {**info, "sweep": {"trial": trial.number, "metric": self.metric,
                                           "value": value, "params": values}})
        return float(value)

    def _failed(self, trial: Any, run: Path, error: str) -> TrialFailed:
        trial.set_user_attr("error", error[:2000])
        _mark(run, status="failed", trial=trial.number, error=error[:2000])
        return TrialFailed(error)

    def told(self, trial: Any, info: dict[str, Any]) -> None:
        if self.quiet:
            return
        row = next((r for r in info["trials"] if r["trial"] == trial.number), None)
        if row is None:
            return
        params = ", ".join(f"{k}={report._short(v)}" for k, v in row["params"].items())
        if row["state"] == "complete":
            what = f"{self.metric} {row['value']:.4f}"
        elif row["state"] == "pruned":
            at = row.get("pruned_at") or {}
            what = f"pruned at epoch {at.get('epoch')} ({self.metric} {at.get('value', math.nan):.4f})"
        else:
            what = f"failed: {row.get('error', 'no reason recorded')}"
        best = info.get("best") or {}
        tail = f"; best so far trial {best['trial']} ({best['value']:.4f})" if best else ""
        print(f"trial {trial.number}: {params}: {what}{tail}", flush=True)


class _Pruning:
    """The trainer callback: report the metric each epoch, raise TrialPruned when the pruner
    says so (after writing the epochs so far to the run folder's history). Never after the
    last epoch: a trial that trained to its end is complete, whatever its value.
    """

    def __init__(self, optuna: Any, trial: Any, metric: str) -> None:
        self.optuna, self.trial, self.metric = optuna, trial, metric
        self.epoch: int | None = None
        self.value: float | None = None

    def __call__(self, trainer: Any, record: dict[str, Any]) -> None:
        value = record.get(self.metric)
        if value is None or not math.isfinite(value):
            return  # a missing or NaN metric fails the trial at its end, not here
        self.epoch, self.value = record["epoch"], float(value)
        self.trial.report(float(value), record["epoch"])
        last = record["epoch"] >= trainer.spec.epochs or trainer.stopped_early
        if not last and self.trial.should_prune():  # a trial that trained to its end is kept
            if trainer.run_dir is not None:
                trainer.history.write(trainer.run_dir)  # the partial run keeps its epochs
            raise self.optuna.TrialPruned(f"pruned at epoch {record['epoch']}: {self.metric} "
                                          f"{value:.4f}")


def _mark(run: Path, **fields: Any) -> None:
    """run.json of a trial that did not finish: its status and why (kept as a run folder)."""
    run.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(Exception):  # a damaged run.json is replaced
        fields = {**read_info(run), **fields}
    write_info(run, fields)


def _retry(optuna: Any, study: Any, number: int, params: Mapping[str, Any]) -> None:
    study.enqueue_trial(dict(params), user_attrs={"retry_of": number})


def _fail_killed_trials(optuna: Any, study: Any, out: Path) -> None:
    """Trials RUNNING in a process of this machine that is gone (killed): failed, and re-run
    once with the same values. Another machine's are left to the storage's heartbeat."""
    me = report.worker()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker") or {}
        if worker.get("host") != me["host"] or worker.get("pid") in (None, me["pid"]):
            continue
        if _alive(int(worker["pid"])):
            continue
        try:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        except Exception:  # noqa: BLE001 - another process failed it first
            continue
        _mark_killed(out, t)
        _retry(optuna, study, t.number, t.params)


def _mark_killed(out: Path, trial: Any) -> None:
    run = trial.user_attrs.get("run")
    folder = out / run if run else None
    if folder is not None and (folder / RUN_INFO).is_file():
        with contextlib.suppress(Exception):
            if read_info(folder).get("status") == "running":
                _mark(folder, status="killed", trial=trial.number)


def _stale_retry(study: Any, trial: Any) -> None:
    """The storage's heartbeat found `trial` stale (its process died, on another machine; its
    run folder is there, so it is left as it is)."""
    optuna = _optuna()
    _retry(optuna, study, trial.number, trial.params)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _used(optuna: Any, study: Any) -> int:
    """Trials that count towards `trials`: finished or running, less those being re-run."""
    states = optuna.trial.TrialState
    all_trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in all_trials}
    return sum(1 for t in all_trials if t.state in (states.COMPLETE, states.PRUNED, states.RUNNING)
               or t.state == states.FAIL and t.number not in retried)


def _optuna() -> Any:
    try:
        # optional: Optuna (the sweep extra)
        import optuna
    except ImportError:
        raise SpecError(Problem("", f"sweeps need Optuna, which is not installed: {INSTALL}",
                                "missing_dependency")) from None
    return optuna


def _storage(optuna: Any, url: str | Any, heartbeat_s: int, grace_s: int) -> Any:
    if not isinstance(url, str):
        return url  # an Optuna storage object, used as given
    kwargs: dict[str, Any] = {"heartbeat_interval": heartbeat_s, "grace_period": grace_s}
    stale = "heartbeat_stale_trial_callback"
    if stale not in inspect.signature(optuna.storages.RDBStorage).parameters:
        stale = "failed_trial_callback"  # optuna < 4.9
    kwargs[stale] = _stale_retry
    if url.startswith("sqlite"):  # concurrent workers wait for the file's lock, not fail
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    for attempt in range(4):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except Exception as err:  # noqa: BLE001 - a URL or database Optuna cannot use
            if attempt < 3 and _may_be_a_race(err):
                # workers started together on a new database race to create its tables; the
                # loser finds them made on its next try
                time.sleep(0.2 * (attempt + 1))
                continue
            raise SpecError(Problem("", f"cannot open the study storage {_shown_url(url)}: "
                                    f"{type(err).__name__}: {' '.join(str(err).split())[:300]}",
                                    "bad_storage", "--storage")) from None
    raise AssertionError("unreachable")


def _may_be_a_race(err: Exception) -> bool:
    """A database error (not a bad URL or a missing driver): worth another try."""
    return type(err).__module__.startswith("sqlalchemy") and type(err).__name__ in (
        "IntegrityError", "OperationalError")


def _shown_url(url: str | Any) -> str:
    if not isinstance(url, str):
        return type(url).__name__
    try:
        from sqlalchemy.engine import make_url  # optional: comes with Optuna

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: shown as given
        return url


def _pruner(optuna: Any, pruner: str | Any) -> Any:
    if not isinstance(pruner, str):
        return pruner
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if pruner == "none":
        return optuna.pruners.NopPruner()
    raise SpecError(Problem("", f"one of {', '.join(PRUNERS)}, not {pruner!r}",
                            "bad_argument", "--pruner"))


def _direction(recipe: Recipe, metric: str, direction: str | None) -> str:
    split, _, rest = metric.partition("/")
    names = record_metric_names(recipe.model.head_specs)
    if split not in ("train", "val") or rest not in names:
        known = sorted(f"{s}/{n}" for s in ("val", "train") for n in names)
        close = difflib.get_close_matches(metric, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SpecError(Problem("", f"{metric!r} is not a metric blocks records; {hint}"
                                f"choose one of: {', '.join(known)}", "unknown_metric", "--metric"))
    if split == "val" and recipe.data is not None and recipe.data.val_fraction == 0:
        raise SpecError(Problem("", f"{metric!r} needs a validation split, but data.val_fraction "
                                "is 0", "unknown_metric", "--metric"))
    if direction is None:
        return "minimize" if rest.endswith("loss") else "maximize"
    if direction not in ("maximize", "minimize"):
        raise SpecError(Problem("", f"maximize or minimize, not {direction!r}",
                                "bad_argument", "--direction"))
    return direction


def _check_out(out: Path) -> None:
    """A sweep folder is new, empty, or a sweep's (it has sweep.json or study.db): never
    somebody else's folder filled with trials."""
    if out.exists() and not out.is_dir():
        raise SpecError(Problem("", f"{out} is a file, not a sweep folder", "bad_out", "--out"))
    if out.is_dir() and any(out.iterdir()) and not (
            (out / report.SWEEP_INFO).is_file() or (out / STUDY_DB).is_file()):
        raise SpecError(Problem("", f"{out} is not empty and holds no sweep (no "
                                f"{report.SWEEP_INFO}); choose another --out", "bad_out", "--out"))


def _check_study(study: Any, recipe: Recipe, space: Space, metric: str, direction: str,
                 out: Path) -> None:
    """A study loaded from its storage searches the same recipe and space for the same metric
    (else its trials would mix two searches); a new one records them."""
    trials_dir = out / report.TRIALS
    if not study.get_trials(deepcopy=False) and trials_dir.is_dir() and any(trials_dir.iterdir()):
        raise SpecError(Problem("", f"{out} holds the trials of another study (a new --study "
                                f"name, another --storage, or {STUDY_DB} was deleted); choose "
                                "another --out", "bad_out", "--out"))
    wanted = {"space": json.loads(json.dumps(space.describe())), "metric": metric,
              "recipe": recipe_digest(recipe)}
    attrs = study.user_attrs
    if "space" not in attrs:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
        return
    if study.direction.name.lower() != direction:
        raise SpecError(Problem("", f"study {study.study_name!r} "
                                f"{study.direction.name.lower()}s; this sweep would {direction}: "
                                "pass --study with a new name", "study_mismatch", "--study"))
    for key, value in wanted.items():
        if attrs.get(key) != value:
            shown = "recipe (its keys changed since)" if key == "recipe" else (
                f"{key} ({json.dumps(attrs.get(key))})")
            raise SpecError(Problem("", f"study {study.study_name!r} was started with another "
                                    f"{shown}; resume it with the same one, or pass --study with "
                                    "a new name", "study_mismatch", "--study"))


def recipe_digest(recipe: Recipe) -> str:
    """What the study's trials start from, as a short hash; data file paths left out, so that
    machines holding the same data at other paths share one study."""
    data = recipe.model_dump(mode="json", exclude_none=True)
    for key in ("csv", "npz", "images"):
        (data.get("data") or {}).get(key, {}).pop("path", None)
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
