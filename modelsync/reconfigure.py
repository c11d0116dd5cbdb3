"""What a configuration reload changes for the running daemon, decided apart from
applying it: which models stop, start, restart or take new settings in place, and
whether the reload is refused. daemon.py applies the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelsync.config import Config, ModelConfig

__all__ = ["Reconfigure", "plan"]


@dataclass(frozen=True)
class Reconfigure:
    """The steps of one reload, each list in model-name order."""

    # Set: nothing changes, and this is why (store and state_dir cannot move while running).
    refused: str | None = None
    # The admin endpoint is bound once: a change to it waits for a restart.
    admin_changed: bool = False
    removed: list[str] = field(default_factory=list)
    added: list[ModelConfig] = field(default_factory=list)
    # A new source is a new worker (its watch and backend change with it).
    restarted: list[ModelConfig] = field(default_factory=list)
    # Other changes apply to the running worker at its next pass.
    updated: list[ModelConfig] = field(default_factory=list)
    # Models whose [models.verify] changed (or that are new): their warnings are said again.
    verify_changed: list[ModelConfig] = field(default_factory=list)
    # Every model of the new configuration gets a pass now.
    triggered: list[str] = field(default_factory=list)


def plan(old: Config, new: Config) -> Reconfigure:
    """The steps that take a daemon running ``old`` to ``new``."""
    if (new.store, new.state_path) != (old.store, old.state_path):
        return Reconfigure(
            refused="config reload refused: store and state_dir cannot change while "
            "running; restart modelsync to apply"
        )
    before = {m.name: m for m in old.models}
    after = {m.name: m for m in new.models}
    added: list[ModelConfig] = []
    restarted: list[ModelConfig] = []
    updated: list[ModelConfig] = []
    verify_changed: list[ModelConfig] = []
    for name, model in sorted(after.items()):
        earlier = before.get(name)
        if earlier is None:
            added.append(model)
            verify_changed.append(model)
        elif model != earlier:
            (restarted if model.source != earlier.source else updated).append(model)
            if model.verify != earlier.verify:
                verify_changed.append(model)
    return Reconfigure(
        admin_changed=new.admin != old.admin,
        removed=sorted(set(before) - set(after)),
        added=added,
        restarted=restarted,
        updated=updated,
        verify_changed=verify_changed,
        triggered=sorted(after),
    )
