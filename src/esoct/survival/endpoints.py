"""Named time-to-event endpoints in the manifest: ``<name>_months`` + ``<name>_event`` column pairs.

Overall survival is ``os_months`` / ``os_event``; disease-free and progression-free survival are
``dfs_*`` and ``pfs_*``; any other pair (``rfs_months`` / ``rfs_event``, ...) is an endpoint too. A
study chooses one per task (``tasks.survival.endpoint``).
"""

from __future__ import annotations

import re

#: Readable names of the common endpoints (others are shown upper-case).
ENDPOINT_NAMES = {
    "os": "overall survival",
    "dfs": "disease-free survival",
    "pfs": "progression-free survival",
    "rfs": "recurrence-free survival",
    "efs": "event-free survival",
    "dss": "disease-specific survival",
}
_NAME = re.compile(r"^[a-z][a-z0-9]*$")


def endpoint_columns(endpoint: str) -> tuple[str, str]:
    """``(time column, event column)`` of an endpoint.

    Examples
    --------
    >>> endpoint_columns("dfs")
    ('dfs_months', 'dfs_event')
    """
    endpoint = str(endpoint).strip().lower()
    if not _NAME.match(endpoint):
        raise ValueError(f"endpoint names are lower-case letters and digits (os, dfs, pfs...), got {endpoint!r}")
    return f"{endpoint}_months", f"{endpoint}_event"


def endpoint_title(endpoint: str) -> str:
    """Readable name, e.g. ``"disease-free survival (DFS)"``."""
    endpoint = str(endpoint).lower()
    name = ENDPOINT_NAMES.get(endpoint)
    return f"{name} ({endpoint.upper()})" if name else f"{endpoint.upper()} (time to event)"


def manifest_endpoints(columns, partial: bool = False) -> list[str]:
    """Endpoints whose time and event columns are both among ``columns``, ``os`` first.

    With ``partial``, also endpoints of which only one column is present (to report the other missing).

    Examples
    --------
    >>> manifest_endpoints(["patient_id", "dfs_event", "os_months", "os_event", "dfs_months", "pfs_months"])
    ['os', 'dfs']
    """
    columns = set(map(str, columns))
    times = {c[: -len("_months")] for c in columns if c.endswith("_months")}
    events = {c[: -len("_event")] for c in columns if c.endswith("_event")}
    found = (times | events) if partial else (times & events)
    return sorted((e for e in found if _NAME.match(e)), key=lambda e: (e != "os", e))
