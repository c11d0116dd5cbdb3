"""The docs cannot drift: config keys and metrics are checked against the code."""

from __future__ import annotations

import re
import typing

from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel

from modelsync.config import Config
from modelsync.methods import BUILT_IN, method_names, method_of
from modelsync.metrics import Metrics
from modelsync.sources import backends
from modelsync.sources.ranges import RangeOptions
from modelsync.sync import Outcome, PassResult
from tests.helpers import REPO

DOCS = REPO / "docs"


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The BaseModel inside an annotation such as ModelConfig, tuple[ModelConfig, ...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        key = field.alias or name
        nested = _model_of(field.annotation)
        many = typing.get_origin(field.annotation) in (tuple, list)
        if nested is not None:
            keys |= _keys(nested, f"{prefix}{key}{'[]' if many else ''}.")
        else:
            keys.add(prefix + key)
    return keys


def _method_keys() -> set[str]:
    """The keys of every notify and confirm method's own options."""
    keys = set()
    for kind in ("notify", "confirm"):
        package = f"modelsync.{kind}"
        for name in method_names(package):
            if name not in BUILT_IN:
                keys |= {
                    f"models[].{kind}.{k}" for k in method_of(package, name).options.model_fields
                }
    return keys


def test_every_config_key_is_documented_and_every_documented_key_exists() -> None:
    """docs/configuration.md's table and the config model (with every notify and
    confirm method's own keys) list the same keys."""
    text = (DOCS / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.M))
    assert documented == _keys(Config) | _method_keys()


def test_every_backend_and_its_options_are_documented() -> None:
    """docs/sources.md has a section per backend (by its URL form) whose tables, with
    the shared transfer table for network backends, list exactly its options."""
    text = (DOCS / "sources.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)
    shared = set(re.findall(r"^\| `([^`]+)` \|", sections[0], flags=re.M))
    assert shared == set(RangeOptions.model_fields)
    for backend in backends():
        found = [s for s in sections[1:] if s.startswith(backend.example.split("/")[0])]
        assert len(found) == 1, f"docs/sources.md: no section for {backend.example}"
        documented = set(re.findall(r"^\| `([^`]+)` \|", found[0], flags=re.M))
        if issubclass(backend.options, RangeOptions):
            documented |= shared
        assert documented == set(backend.options.model_fields), backend.name


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    """docs/operations.md's metrics table and the registered metrics agree."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.record(PassResult("m", Outcome.ROLLED_BACK, 1), created=1.0, failures=1, stale=True)
    exposed = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in registry.collect()
    }
    assert "modelsync_sync_total" in generate_latest(registry).decode()
    text = (DOCS / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(modelsync_[a-z_]+)` \|", text, flags=re.M))
    assert documented == exposed


def test_docs_link_to_files_that_exist() -> None:
    """Relative links in README and docs point at files in the repository."""
    for page in [REPO / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(((?:\.\./|\./)?[^)#:]+)\)", page.read_text()):
            path = (page.parent / target).resolve()
            assert path.is_relative_to(REPO.resolve()), f"{page.name}: {target} is outside"
            assert path.exists(), f"{page.name}: {target}"


def test_the_design_contract_is_in_the_repository() -> None:
    """docs/design.md holds the contract and README links it."""
    assert (DOCS / "design.md").read_text().startswith("# modelsync — design contract")
    assert "](docs/design.md)" in (REPO / "README.md").read_text()


def test_readme_first_screen_states_what_the_tests_need() -> None:
    """README's first 40 lines: make demo, make test, and everything make test needs."""
    first = "\n".join((REPO / "README.md").read_text().splitlines()[:40])
    for needed in ("make demo", "make test", "Node.js", "npm", "5 GB", "Chromium", "promtool"):
        assert needed in first, needed
    assert "[`.ci/run`](.ci/run)" in first and "skipped: N" in first
    assert "need only Python" not in first
