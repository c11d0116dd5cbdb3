"""botocore's data loader, without its walk of every service's directory per client.

Before it loads a service's model, botocore checks that the service exists by
listing every service it knows: a ``listdir`` and a ``stat`` per directory under
``botocore/data`` and AWS_DATA_PATH (2,780 stats and 914 listdirs here), twice per
client (the model and the endpoint rules). The list is only read when the name is
missing, to say which names exist. Made once per process (per session: the S3
client, the SQS client of [[events]]), it was 28-30 ms of the 88-92 ms of a first
S3 client on the project's machine with a warm cache (60 ms without it;
docs/performance.md), more on a container's first start, where nothing is cached.
botocore's own change is pending (boto/botocore#3687).

Here the existence of one name is checked exactly as the full walk would check it
(a directory of that name in a search path, holding a version with the model
type), and the full list is made only when it is iterated (the error's list of
known names). Nothing else of the loader changes: the same search paths
(AWS_DATA_PATH first), the same files, the same caches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

__all__ = ["install"]


def install(session: Any) -> None:
    """Make ``session`` load its data with the quick loader, built when first needed
    from the same AWS_DATA_PATH as botocore's (a session it cannot reach is left as
    it is: botocore's own loader then)."""
    components = getattr(session, "_components", None)
    if components is None or not hasattr(components, "lazy_register_component"):
        return
    components.lazy_register_component(
        "data_loader", lambda: _loader(session.get_config_variable("data_path"))
    )


def _loader(search_path_string: str | None) -> Any:
    """botocore.loaders.create_loader, with the quick membership check."""
    from botocore.loaders import Loader

    class QuickLoader(Loader):  # type: ignore[misc]
        def list_available_services(self, type_name: str) -> _Services:
            return _Services(self, type_name)

    if search_path_string is None:
        return QuickLoader()
    paths = [os.path.expandvars(path) for path in search_path_string.split(os.pathsep)]
    return QuickLoader(extra_search_paths=[os.path.expanduser(path) for path in paths])


class _Services:
    """The services with a model of ``type_name``: ``in`` checks one name; iterating
    makes botocore's full list (cached by its loader)."""

    def __init__(self, loader: Any, type_name: str) -> None:
        self._loader = loader
        self._type = type_name

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or not name or os.sep in name or name in (".", ".."):
            return False
        exists = self._loader.file_loader.exists
        for base in self._loader.search_paths:
            directory = os.path.join(base, name)
            if not os.path.isdir(directory):
                continue
            for version in os.listdir(directory):
                if exists(os.path.join(directory, version, self._type)):
                    return True
        return False

    def _all(self) -> list[str]:
        from botocore.loaders import Loader

        return list(Loader.list_available_services(self._loader, self._type))

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())
