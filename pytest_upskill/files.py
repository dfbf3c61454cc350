"""Writing a file so that a reader never sees half of it: one way, used by every writer of the
plugin (reports, the response cache, history, the teacher's skills)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file of a name of its own beside it, then
    rename: a reader (another xdist worker, a crashed run's next run) sees the old file or the new,
    never a part. The parent folder is made if needed; the temporary file never outlives a failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".tmp", dir=path.parent)  # no reader globs *.tmp
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
