"""Keep an index current while files appear, change, move or vanish (``--watch``).

    watcher = Watcher(index, index.store.roots(), on_batch=print)
    watcher.start()          # events from the OS (inotify, FSEvents...), else polling
    ...
    watcher.stop()

The operating system's events (through watchdog) name paths; the watcher gathers them and,
once the folders have been quiet for ``debounce`` seconds (or ``max_delay`` after the first
event of a burst that will not stop), hands them all to one ``Index.refresh`` call, which
commits. A burst of a thousand new files is a few batches, not a thousand updates, and
searches go on meanwhile (SQLite's WAL: readers never wait for the writer) and see each
committed batch. A path named twice in a batch is looked at once; a folder stands for
everything under it. Where the OS gives no events (network shares, some containers), or when
asked, watchdog's ``PollingObserver`` compares directory snapshots instead.
"""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from vislang.errors import IndexBusyError
from vislang.images import is_image_path

IGNORED_EVENTS = ("opened", "closed_no_write")


class Watcher:
    """Watches ``roots`` and refreshes ``index`` in batches, in a thread of its own."""

    def __init__(self, index, roots: Sequence[str], *, exclude: Sequence[str] = (),
                 hidden: bool = False, debounce: float = 0.5, max_delay: float = 5.0,
                 max_batch: int = 5000, poll: bool = False, poll_interval: float = 1.0,
                 catch_up: bool = False, owns_index: bool = False,
                 on_batch: Callable | None = None, on_problem: Callable[[str], None] | None = None):
        """``catch_up``: the first batch refreshes the whole roots (for a server that starts
        on an index that may be behind); ``on_batch(summary, paths)`` after each committed
        batch; ``on_problem(line)`` for a folder gone or back, or a batch that failed."""
        self.index = index
        self.roots = [os.path.abspath(r) for r in roots]
        self.exclude, self.hidden = tuple(exclude), hidden
        self.debounce, self.max_delay, self.max_batch = debounce, max_delay, max_batch
        self.poll, self.poll_interval = poll, poll_interval
        self.owns_index = owns_index
        self.on_batch, self.on_problem = on_batch, on_problem
        self._pending: dict[str, bool] = {r: True for r in self.roots} if catch_up else {}
        self._first = self._last = time.monotonic()
        self._cond = threading.Condition()
        self._stopped = False
        self._observer = None
        self._watches: dict[str, object] = {}
        self._thread: threading.Thread | None = None
        self._gone: set[str] = set()
        self._skip = os.path.abspath(os.fspath(index.folder)) + os.sep
        self.batches = 0
        self.last_batch: float | None = None  # unix time of the last committed batch
        self.last_paths = 0
        self.problems: list[str] = []
        self.polling = poll

    # -- life ----------------------------------------------------------------------------------
    def start(self) -> "Watcher":
        """Start watching (events queue from now on) and the thread that indexes them."""
        self.observe()
        return self.work()

    def observe(self) -> "Watcher":
        """Start only the observer: events gather until ``work`` (the CLI catches up first)."""
        if not self.poll:
            try:
                self._observer = Observer()
                self._schedule_all()
                self._observer.start()
                return self
            except OSError as error:  # inotify watches or instances used up, for one
                self._problem(f"the operating system gives no file events here "
                              f"({error.strerror or error}); polling every "
                              f"{self.poll_interval:g} s instead")
                self._stop_observer()
        self.polling = True
        self._observer = PollingObserver(timeout=self.poll_interval)
        self._schedule_all()
        self._observer.start()
        return self

    def work(self) -> "Watcher":
        self._thread = threading.Thread(target=self._run, name="vislang-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._stop_observer()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)
        if self.owns_index:
            self.index.close()

    def wait(self) -> None:
        """Block until stopped (Ctrl-C in the CLI raises KeyboardInterrupt out of here)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def status(self) -> dict:
        with self._cond:
            pending = len(self._pending)
        return {"folders": self.roots, "polling": self.polling, "pending": pending,
                "batches": self.batches, "last_batch_paths": self.last_paths,
                "last_batch": datetime.fromtimestamp(self.last_batch).isoformat(
                    timespec="seconds") if self.last_batch else None,
                "gone": sorted(self._gone), "problems": self.problems[-5:]}

    # -- events --------------------------------------------------------------------------------
    def _schedule_all(self) -> None:
        for root in self.roots:
            if os.path.isdir(root):
                self._schedule(root)
            else:
                self._note_gone(root)

    def _schedule(self, root: str) -> None:
        handler = _Handler(self, root)
        self._watches[root] = self._observer.schedule(handler, root, recursive=True)

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            try:
                observer.stop()
                if observer.is_alive():
                    observer.join(timeout=10)
            except (OSError, RuntimeError):
                pass

    def queue(self, path: str, is_dir: bool, root: str) -> None:
        """Note a path an event named (the handler calls this; tests may too)."""
        if path.startswith(self._skip) or path + os.sep == self._skip:
            return  # the index's own files, when it lives inside a watched folder
        if not is_dir and not is_image_path(path):
            return
        relative = os.path.relpath(path, root)
        parts = relative.split(os.sep)
        if not self.hidden and any(p.startswith(".") for p in parts if p not in (".", "..")):
            return
        if any(fnmatch.fnmatch(parts[-1], g) or fnmatch.fnmatch(relative, g)
               for g in self.exclude):
            return
        with self._cond:
            now = time.monotonic()
            if not self._pending:
                self._first = now
            self._last = now
            self._pending[path] = self._pending.get(path, False) or is_dir
            self._cond.notify_all()

    # -- batches -------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                self._cond.wait(timeout=1.0)
                if self._stopped:
                    return
                now = time.monotonic()
                ready = self._pending and (now - self._last >= self.debounce
                                           or now - self._first >= self.max_delay)
                if not ready:
                    wait = self.debounce - (now - self._last) if self._pending else 0
                else:
                    batch = self._take()
            self._check_roots()
            if not ready:
                if wait > 0:
                    time.sleep(min(wait, 0.5))
                continue
            self._index(batch)

    def _take(self) -> dict[str, bool]:
        """Up to ``max_batch`` pending paths (called holding the lock); a folder takes the
        paths below it along, since refreshing it looks at them all."""
        ordered = sorted(self._pending)
        batch: dict[str, bool] = {}
        folder = None
        for path in ordered:
            if folder is not None and path.startswith(folder):
                del self._pending[path]
                continue
            if len(batch) >= self.max_batch:
                break
            batch[path] = self._pending.pop(path)
            folder = path.rstrip(os.sep) + os.sep if batch[path] else None
        if self._pending:
            self._first = time.monotonic() - self.max_delay  # the rest: at once, no waiting
        return batch

    def _index(self, batch: dict[str, bool]) -> None:
        # A root gone as a whole (unmounted, moved away) keeps its entries: one status line
        # says so; its files deleted one by one are forgotten one by one.
        paths = [p for p in batch if p not in self.roots or os.path.isdir(p)]
        if not paths:
            return
        try:
            summary = self.index.refresh(paths, self.exclude, self.hidden)
        except IndexBusyError as error:
            self._problem(f"{error}; trying again in 2 s")
            with self._cond:
                for path, is_dir in batch.items():
                    self._pending[path] = self._pending.get(path, False) or is_dir
            time.sleep(2)
            return
        except Exception as error:  # one bad batch must not end the watch
            self._problem(f"could not index {len(batch)} changed path(s): {error}")
            return
        self.batches += 1
        self.last_batch, self.last_paths = time.time(), len(batch)
        if self.on_batch is not None:
            self.on_batch(summary, len(batch))

    def _check_roots(self) -> None:
        for root in self.roots:
            there = os.path.isdir(root)
            if not there and root not in self._gone:
                self._note_gone(root)
            elif there and root in self._gone:
                self._gone.discard(root)
                self._problem(f"watched folder {root} is back; watching it again")
                try:
                    old = self._watches.pop(root, None)
                    if old is not None and self._observer is not None:
                        self._observer.unschedule(old)
                except (KeyError, OSError):
                    pass
                if self._observer is not None:
                    try:
                        self._schedule(root)
                    except OSError as error:
                        self._problem(f"cannot watch {root} again: {error}")
                self.queue(root, True, root)

    def _note_gone(self, root: str) -> None:
        self._gone.add(root)
        self._problem(f"watched folder {root} is gone; searches go on over what the index "
                      "holds, and the other folders are still watched")

    def _problem(self, line: str) -> None:
        self.problems.append(line)
        del self.problems[:-20]
        if self.on_problem is not None:
            self.on_problem(line)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher, root: str):
        super().__init__()
        self.watcher, self.root = watcher, root

    def on_any_event(self, event) -> None:
        if event.event_type in IGNORED_EVENTS:
            return
        if event.is_directory and event.event_type in ("modified", "closed"):
            return  # a folder's own change says nothing its files' events do not
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path:
                self.watcher.queue(os.fsdecode(path), event.is_directory, self.root)
