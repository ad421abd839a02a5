"""Per-app singletons built at start-up: the catalog, storage, the run creator and the
embedded worker."""
from __future__ import annotations

from flask import Flask, current_app

from .catalog import Catalog
from .providers import registry
from .services.run_creation import RunCreator
from .storage import Storage, open_storage

CATALOG = "runbase.catalog"
STORAGE = "runbase.storage"
RUN_CREATOR = "runbase.run_creator"
WORKER = "runbase.worker"
FETCHER = "runbase.fetcher"


def init_app(app: Flask) -> None:
    """Load and check the catalog, open and check storage and bind the run creator, once,
    when the app is created."""
    app.extensions[CATALOG] = Catalog.load(override_path=app.config.get("CATALOG_PATH"),
                                           adapters=registry.ADAPTERS)
    storage = open_storage(app.config.get("STORAGE_URL"), f"{app.config['DATA_DIR']}/files")
    # A bucket that is missing or not writable stops the start here (StorageUnavailable),
    # not the first run; local disk pays nothing (its directory was just made).
    storage.check()
    app.extensions[STORAGE] = storage
    app.extensions[RUN_CREATOR] = RunCreator(app.extensions[CATALOG], app.config)


def catalog(app: Flask | None = None) -> Catalog:
    """The app's model catalog."""
    return (app or current_app).extensions[CATALOG]


def storage(app: Flask | None = None) -> Storage:
    """The app's file storage."""
    return (app or current_app).extensions[STORAGE]


def run_creator(app: Flask | None = None) -> RunCreator:
    """The app's run creator: the one way runs are made, bound to its catalog and settings."""
    return (app or current_app).extensions[RUN_CREATOR]


def fetcher(app: Flask | None = None):
    """The app's SSRF-guarded fetcher (net.Fetcher), built on first use and shared by
    every run and thread: building one per run (a requests Session and a pool manager)
    was a twentieth of a worker's CPU per run at a 0 ms provider, and a shared one keeps
    its checked, pinned connections for the next download from the same host."""
    app = app or current_app
    shared = app.extensions.get(FETCHER)
    if shared is None:
        from . import net
        shared = app.extensions.setdefault(FETCHER, net.Fetcher(
            allow_loopback=app.config.get("FETCH_ALLOW_LOOPBACK", False),
            max_bytes=app.config.get("FETCH_MAX_BYTES", net.DEFAULT_MAX_BYTES)))
    return shared


def wake_worker(app: Flask | None = None) -> None:
    """Tell the embedded worker, if this process has one, that a run is waiting."""
    worker = (app or current_app).extensions.get(WORKER)
    if worker is not None:
        worker.wake()
