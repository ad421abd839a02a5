"""Per-app singletons built at start-up: the catalog, storage and the embedded worker."""
from __future__ import annotations

from flask import Flask, current_app

from .services.catalog import Catalog
from .storage import LocalStorage, Storage

CATALOG = "runbase.catalog"
STORAGE = "runbase.storage"
WORKER = "runbase.worker"


def init_app(app: Flask) -> None:
    """Load and check the catalog and open storage, once, when the app is created."""
    app.extensions[CATALOG] = Catalog.load(override_path=app.config.get("CATALOG_PATH"))
    app.extensions[STORAGE] = LocalStorage(f"{app.config['DATA_DIR']}/files")


def catalog(app: Flask | None = None) -> Catalog:
    """The app's model catalog."""
    return (app or current_app).extensions[CATALOG]


def storage(app: Flask | None = None) -> Storage:
    """The app's file storage."""
    return (app or current_app).extensions[STORAGE]


def wake_worker(app: Flask | None = None) -> None:
    """Tell the embedded worker, if this process has one, that a run is waiting."""
    worker = (app or current_app).extensions.get(WORKER)
    if worker is not None:
        worker.wake()


def after_cancel(run, app: Flask | None = None) -> None:
    """After a cancel committed: ask an async provider to stop the job (best effort),
    and wake the worker so the run's webhook goes out now, not at the next poll."""
    app = app or current_app._get_current_object()
    if run.upstream_id is not None:
        from .worker.execute import cancel_upstream  # local: the worker imports this module
        cancel_upstream(app, run)
    wake_worker(app)
