"""Resources read from MLflow's stores: what the policy decides on, never taken from the request.

A run is judged by its experiment, a model version by its registered model, a trace or logged
model by its experiment: the attributes that matter (project, classification, owner) live on
experiments and registered models as tags, and are read here from the database.

The caches, and what invalidates each (a cache holds only what MLflow cannot change behind it,
or holds it for at most ATTRIBUTE_TTL):
  _parents            run → experiment, logged model → experiment, issue / label schema /
                      review queue → experiment, model version → source run: no MLflow call
                      changes these links, so they are kept for the process (bounded LRU).
                      A trace's experiment is NOT cached: MLflow's trace upsert (StartTraceV3
                      with an existing trace id) can move a trace to another experiment.
  _experiments        experiment attributes (tags, lifecycle, artefact location): 1 s, and
                      dropped at once when this worker allows a change to the experiment.
  _registered_models  registered-model attributes by name: 1 s, dropped on an allowed change
                      (a rename or a tag) in this worker.
  _locations          the custom `mlflow-artifacts:` roots: 1 s; re-read fresh before a path
                      is declared unowned.
Name lookups (experiment by name) are never cached: a rename or delete changes them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from mlflow_secure.ttl_cache import TtlCache

PROJECT_TAG = "mlflow.secure.project"
CLASSIFICATION_TAG = "mlflow.secure.classification"
OWNER_TAG = "mlflow.user"
ATTRIBUTE_TTL = 1.0
MAX_CACHED = 20_000


_SUB_OBJECT_GETTERS = {
    "issue": "get_issue",
    "label_schema": "get_label_schema",
    "review_queue": "get_review_queue",
}


SERVED_SCHEME = "mlflow-artifacts"


# MLflow's proxy also serves `http(s)://<any host>/.../api/2.0/mlflow-artifacts/artifacts/<p>`
# roots (`--default-artifact-root http://<server>/api/2.0/mlflow-artifacts/artifacts`) from its
# own store, reading the path after this anchor
# (handlers._get_proxied_run_artifact_destination_path).
HTTP_ANCHOR = "/api/2.0/mlflow-artifacts/artifacts/"


def served_path(location: str) -> str | None:
    """The path under the served artefact root of a location MLflow's proxy serves from its
    own store, without slashes at either end (None for any other location): an
    `mlflow-artifacts:` URI by its path alone (`mlflow-artifacts://host:port/p` too), an
    http(s) URL by what follows its first `/api/2.0/mlflow-artifacts/artifacts/`, as MLflow
    reads them."""
    from urllib.parse import urlparse

    parsed = urlparse(location)
    scheme = parsed.scheme.lower()  # schemes compare case-insensitively, as MLflow's
    if scheme == SERVED_SCHEME:
        return parsed.path.strip("/")
    if scheme in ("http", "https") and HTTP_ANCHOR in parsed.path:
        return parsed.path.split(HTTP_ANCHOR)[1].strip("/")
    return None


def is_default_root(root: str) -> bool:
    """`<experiment id>` is the tree MLflow gives an experiment without a custom location."""
    return root.split("/", 1)[0].isdigit()


class ResourceNotFound(LookupError):
    """The named resource does not exist (the request is left to MLflow to answer 404)."""


class NeedsStore(BaseException):
    """Raised inside `cache_only()` when an answer needs the database.

    A BaseException so that no `except Exception` on the way (which turns store errors into
    ResourceNotFound) can mistake it for a missing resource."""


_cache_only = threading.local()


@contextmanager
def cache_only() -> Iterator[None]:
    """Resolve from the caches alone, raising NeedsStore instead of touching a store: the ASGI
    front door tries this on the event loop first and moves to a worker thread only when the
    database is really needed (most requests name something resolved a moment ago)."""
    _cache_only.active = True
    try:
        yield
    finally:
        _cache_only.active = False


def _guarded(store: Callable[[], Any]) -> Callable[[], Any]:
    def get() -> Any:
        if getattr(_cache_only, "active", False):
            raise NeedsStore
        return store()

    return get


def policy_attributes(tags: Mapping[str, str | None]) -> dict[str, Any]:
    """What the policy reads of an item's tags: project, classification, owner, policy tags.

    Policy tag keys are compared case-insensitively, as a store with a case-insensitive
    collation compares them (writing any other spelling is refused: resolution.py; listings
    read such rows of an older store the same way: listings/tag_keys.py)."""
    tags = {
        (k.lower() if k.lower().startswith("mlflow.secure.") else k): v for k, v in tags.items()
    }
    return {
        "project": tags.get(PROJECT_TAG) or None,
        "classification": tags.get(CLASSIFICATION_TAG) or None,
        "owner": tags.get(OWNER_TAG) or None,
        "tags": {k: v for k, v in tags.items() if k.startswith("mlflow.secure.")},
    }


class ResourceResolver:
    """Resolves resources through MLflow's own store objects (same database, same code)."""

    def __init__(
        self,
        tracking_store: Callable[[], Any],
        registry_store: Callable[[], Any],
    ) -> None:
        self._tracking = _guarded(tracking_store)
        self._registry = _guarded(registry_store)
        # run/trace/logged model/version → parent: immutable, kept for the process
        self._parents = TtlCache(None, MAX_CACHED)
        self._experiments = TtlCache(ATTRIBUTE_TTL, MAX_CACHED)
        self._registered_models = TtlCache(ATTRIBUTE_TTL, MAX_CACHED)
        self._locations = TtlCache(ATTRIBUTE_TTL, MAX_CACHED)

    def tracking_store(self) -> Any:
        return self._tracking()

    def registry_store(self) -> Any:
        return self._registry()

    # -------------------------------------------------------------- invalidation

    def forget_experiment(self, experiment_id: str) -> None:
        self._experiments.drop(str(experiment_id))

    def forget_registered_model(self, name: str) -> None:
        self._registered_models.drop(name)

    # -------------------------------------------------------------- lookups

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        experiment_id = str(experiment_id)
        cached = self._experiments.get(experiment_id)
        if cached is None:
            try:
                experiment = self._tracking().get_experiment(experiment_id)
            except Exception as exc:  # MLflow raises MlflowException(RESOURCE_DOES_NOT_EXIST)
                raise ResourceNotFound(f"experiment {experiment_id}") from exc
            cached = {
                "type": "experiment",
                "id": experiment_id,
                "experiment_id": experiment_id,
                "lifecycle_stage": experiment.lifecycle_stage,
                "artifact_location": experiment.artifact_location,
                **policy_attributes(experiment.tags or {}),
            }
            self._experiments.put(experiment_id, cached)
        return dict(cached)

    def _parent_experiment(self, kind: str, key: str, load: Callable[[], str | None]) -> str:
        cached = self._parents.get((kind, key))
        if cached is None:
            try:
                cached = load()
            except Exception as exc:
                raise ResourceNotFound(f"{kind} {key}") from exc
            if cached is None:
                raise ResourceNotFound(f"{kind} {key}")
            cached = str(cached)
            self._parents.put((kind, key), cached)
        return cached

    def _within_experiment(self, kind: str, key: str, load: Callable[[], Any]) -> dict[str, Any]:
        experiment_id = self._parent_experiment(kind, key, load)
        return {**self.experiment(experiment_id), "type": kind, "id": key}

    def run(self, run_id: str) -> dict[str, Any]:
        def load() -> str:
            return self._tracking().get_run(run_id).info.experiment_id

        return self._within_experiment("run", run_id, load)

    def logged_model(self, model_id: str) -> dict[str, Any]:
        def load() -> str:
            return self._tracking().get_logged_model(model_id, allow_deleted=True).experiment_id

        return self._within_experiment("logged_model", model_id, load)

    def trace(self, trace_id: str) -> dict[str, Any]:
        # Not cached: a trace upsert can move the trace to another experiment.
        try:
            experiment_id = self._tracking().get_trace_info(trace_id).experiment_id
        except Exception as exc:
            raise ResourceNotFound(f"trace {trace_id}") from exc
        if experiment_id is None:
            raise ResourceNotFound(f"trace {trace_id}")
        return {**self.experiment(str(experiment_id)), "type": "trace", "id": trace_id}

    def experiment_by_name(self, name: str) -> dict[str, Any]:
        """Looked up by name each time (a rename or delete changes the answer)."""
        try:
            experiment = self._tracking().get_experiment_by_name(name)
        except Exception as exc:
            raise ResourceNotFound(f"experiment named {name}") from exc
        if experiment is None:
            raise ResourceNotFound(f"experiment named {name}")
        return self.experiment(str(experiment.experiment_id))

    def experiment_owning_location(self, uri: str) -> dict[str, Any] | None:
        """The experiment whose artefact location holds `uri` (longest whole-segment prefix),
        or None: a model version's source inside another team's artefacts reads them."""
        best: tuple[int, str] | None = None
        for experiment_id, location in self._all_artifact_locations():
            root = (location or "").rstrip("/")
            inside = root and (uri == root or uri.startswith(root + "/"))
            if inside and (best is None or len(root) > best[0]):
                best = (len(root), str(experiment_id))
        return self.experiment(best[1]) if best else None

    def custom_artifact_roots(self, fresh: bool = False) -> dict[str, list[str]]:
        """Path under the served artefact root → the experiments whose custom
        `mlflow-artifacts:` location it is (at most a second old unless `fresh`; one query)."""
        cached = None if fresh else self._locations.get("roots")
        if cached is None:
            cached = {}
            for experiment_id, location in self._artifact_locations():
                root = served_path(location)
                if root is not None and not is_default_root(root):
                    cached.setdefault(root, []).append(str(experiment_id))
            self._locations.put("roots", cached)
        return cached

    def _all_artifact_locations(self) -> list[tuple[Any, str]]:
        return self._artifact_locations(served_only=False)

    def _artifact_locations(self, served_only: bool = True) -> list[tuple[Any, str]]:
        from mlflow.store.tracking.dbmodels.models import SqlExperiment
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from sqlalchemy import func, or_, select

        store = self._tracking()
        if isinstance(store, SqlAlchemyStore):
            query = select(SqlExperiment.experiment_id, SqlExperiment.artifact_location)
            if served_only:  # LIKE is case-insensitive for ASCII on SQLite; lower() for others
                location = func.lower(SqlExperiment.artifact_location)
                query = query.where(
                    or_(
                        location.like(f"{SERVED_SCHEME}:%"),
                        location.like(f"http%{HTTP_ANCHOR.lower()}%"),
                    )
                )
            with store.ManagedSessionMaker() as session:
                return list(session.execute(query))
        from mlflow.entities import ViewType

        found, token = [], None
        while True:
            page = store.search_experiments(
                view_type=ViewType.ALL, max_results=1000, page_token=token
            )
            found += [(e.experiment_id, e.artifact_location or "") for e in page]
            token = page.token
            if not token:
                return found

    def experiment_of(self, kind: str, key: str) -> dict[str, Any]:
        """An issue, label schema or review queue is governed by the experiment it lives in
        (MLflow gives these opaque ids like `iss-…`, `ls-…`, `rq-…`; the link never changes)."""
        getter = _SUB_OBJECT_GETTERS[kind]

        def load() -> str:
            return getattr(self._tracking(), getter)(key).experiment_id

        return self.experiment(self._parent_experiment(kind, key, load))

    def dataset_experiments(self, dataset_id: str) -> list[dict[str, Any]]:
        """The experiments a dataset is linked to (a dataset may be linked to several)."""
        try:
            ids = self._tracking().get_dataset_experiment_ids(dataset_id)
        except Exception as exc:
            raise ResourceNotFound(f"dataset {dataset_id}") from exc
        return [{**self.experiment(str(i)), "type": "dataset", "id": dataset_id} for i in ids or ()]

    def registered_model(self, name: str) -> dict[str, Any]:
        cached = self._registered_models.get(name)
        if cached is None:
            try:
                model = self._registry().get_registered_model(name)
            except Exception as exc:
                raise ResourceNotFound(f"registered model {name}") from exc
            cached = {"type": "registered_model", "id": name, **policy_attributes(model.tags or {})}
            self._registered_models.put(name, cached)
        return dict(cached)

    def model_version(self, name: str, version: str) -> dict[str, Any]:
        """A version is governed by its registered model; its source run is reported too."""
        resource = {
            **self.registered_model(name),
            "type": "model_version",
            "id": f"{name}/{version}",
        }
        key = ("model_version_run", f"{name}/{version}")
        source_run = self._parents.get(key)
        if source_run is None:
            try:
                source_run = self._registry().get_model_version(name, version).run_id or ""
            except Exception as exc:
                raise ResourceNotFound(f"model version {name}/{version}") from exc
            self._parents.put(key, source_run)
        resource["source_run_id"] = source_run or None
        return resource
