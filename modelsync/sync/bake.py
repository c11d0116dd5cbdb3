"""The bake: a confirmed revision judged on the server's own metrics before it counts.

    before the swap: scrape (the previous revision's counters) → activate, confirm,
    commit (the previous stays in the cache: keep >= 2) → ``start``: scrape, journal
    the bake → every later pass, ``step``: scrape; until the window ends the model
    holds (no newer revision is brought in), then the verdict (modelsync.bakejudge):
    passed, or failed → refuse the revision and activate the previous again.

The bake never waits inside a pass: a pass that finds the model baking scrapes once
and ends, and asks the daemon (``PassResult.wake_in``) for a pass when the window
ends, so other models and the pass deadline are untouched. Everything it knows is in
a journal beside the state (``<state_dir>/bake/<model>.json``, written atomically):
a modelsync restarted (SIGTERM, kill -9) mid-bake goes on with the same window, and
a failed verdict is journalled before the rollback starts, so a rollback a crash
interrupted is done again by the next pass.

The previous revision's figures: its counters at the swap, minus the newest sample
at least one window older (each pass of a baking model keeps one; a daemon passing
every 10 minutes has a 10-minute window, whose ratios compare all the same), else
the oldest sample there is, else its counters since the server loaded it. Each
record says the window it spans (``WindowFigures.window_s``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelsync.bakejournal import Baking, Journal, journal_path_of
from modelsync.bakejudge import BakeConfig, judge, verdict_record
from modelsync.errors import RefusedError, StoreError
from modelsync.metricsread import MetricsUnavailable, Totals, figures, scrape
from modelsync.outcome import Outcome
from modelsync.servers import get_preset
from modelsync.servers.base import MetricsEndpoint
from modelsync.sync import activation
from modelsync.sync.admit import admit
from modelsync.sync.context import PassContext
from modelsync.verdicts import WindowFigures

__all__ = ["before_swap", "endpoint", "start", "step"]

# Past the window's end, how long a bake whose metrics cannot be read waits for them
# before it is judged inconclusive (in windows).
_GRACE_WINDOWS = 1.0
_RETRY_SCRAPE_S = 10.0


def endpoint(config: BakeConfig, model: Any) -> MetricsEndpoint:
    """The metrics URL and series of ``model``: [models.bake] over its preset's."""
    preset = get_preset(model.server).metrics(model)
    url = config.metrics_url or (preset.url if preset else None)
    series = config.series or (preset.series if preset else None)
    assert url is not None and series is not None  # ModelConfig checked it
    return MetricsEndpoint(url, series)


def journal_path(ctx: PassContext) -> Path:
    return journal_path_of(ctx.ms.state_path, ctx.ms.name)


def _scrape(ctx: PassContext, config: BakeConfig) -> Totals | None:
    where = endpoint(config, ctx.model)
    try:
        return scrape(
            where.url, where.series, ctx.model.name, ctx.wall(), config.scrape_timeout, ctx.cancel
        )
    except MetricsUnavailable as exc:
        ctx.log.warning("server metrics unavailable for the bake", error=str(exc))
        return None


def _keep_sample(journal: Journal, sample: Totals, window: float) -> None:
    """Keep the samples a "before" window needs: the newest one at least a window old,
    and every newer one."""
    history = [t for t in journal.history if t.at < sample.at] + [sample]
    old = [t for t in history if t.at <= sample.at - window]
    journal.history = old[-1:] + [t for t in history if t.at > sample.at - window]


def before_swap(ctx: PassContext) -> Totals | None:
    """The previous revision's counters, just before a swap (None: no bake, or no
    metrics). Taken before: a server may drop a version's series when it unloads it."""
    config = ctx.model.bake
    if config is None or ctx.ms.active_version() is None:
        return None
    sample = _scrape(ctx, config)
    if sample is not None:
        journal = Journal.load(journal_path(ctx), ctx.log)
        _keep_sample(journal, sample, config.window)
        journal.save()
    return sample


def start(ctx: PassContext, previous: int | None, before: Totals | None) -> None:
    """Begin the bake of the revision this pass activated and the server confirmed."""
    config, version = ctx.model.bake, ctx.ms.active_version()
    if config is None or previous is None or version is None or version == previous:
        return  # a first revision has nothing to be compared with, nothing to go back to
    if not ctx.state.confirmed:
        return  # stood without a server: no traffic to judge
    journal = Journal.load(journal_path(ctx), ctx.log)
    previous_figures = None
    if before is not None:
        base = [t for t in journal.history if t.at <= before.at - config.window]
        earlier = base[-1:] or [t for t in journal.history if t.at < before.at][:1]
        previous_figures = figures(
            earlier[0] if earlier else None, before, endpoint(config, ctx.model).series
        )
    now = ctx.wall()
    at_swap = _scrape(ctx, config) or before
    journal.baking = Baking(version, previous, now, now + config.window, at_swap, previous_figures)
    journal.history = []
    journal.save()
    ctx.result.bake = verdict_record(
        config, "baking", WindowFigures(), previous_figures, remaining=config.window
    )
    ctx.result.wake_in = config.window
    ctx.log.info(
        "baking",
        version=version,
        previous=previous,
        window_s=config.window,
        previous_figures=previous_figures.model_dump() if previous_figures else None,
    )


def step(ctx: PassContext) -> bool:
    """Go on with the model's bake, if one runs; True when the pass ends here (still
    baking, or rolled back). Without a bake, keep one sample for the next one."""
    config, journal = ctx.model.bake, None
    if config is None:
        return False
    journal = Journal.load(journal_path(ctx), ctx.log)
    baking, active = journal.baking, ctx.ms.active_version()
    if baking is None:
        if active is not None and (sample := _scrape(ctx, config)) is not None:
            _keep_sample(journal, sample, config.window)
            journal.save()
        return False
    if active != baking.version and not (baking.verdict == "failed" and active == baking.previous):
        ctx.log.warning(
            "a bake ended unjudged: the revision is no longer active",
            version=baking.version,
            active=active,
        )
        journal.baking = None
        journal.save()
        return False
    if baking.verdict == "failed":
        return _roll_back(ctx, journal, baking)
    series = endpoint(config, ctx.model).series
    now, sample = ctx.wall(), _scrape(ctx, config)
    current = figures(baking.start, sample, series) if sample is not None else WindowFigures()
    if now < baking.ends_at or (
        sample is None and now < baking.ends_at + config.window * _GRACE_WINDOWS
    ):
        left = baking.ends_at - now
        ctx.result.bake = verdict_record(
            config, "baking", current, baking.previous_figures, remaining=left
        )
        ctx.result.wake_in = left if left > 0 else _RETRY_SCRAPE_S
        if sample is not None:
            baking.figures = current
            journal.save()
        ctx.log.debug("baking", version=baking.version, remaining_s=round(left, 1))
        ctx.settle_unchanged()
        return True
    if sample is None:
        verdict, reason = judge(config, WindowFigures(), baking.previous_figures)
        reason = f"server metrics unavailable at the end of the window; {reason}"
    else:
        verdict, reason = judge(config, current, baking.previous_figures)
    record = verdict_record(config, verdict, current, baking.previous_figures, reason)
    journal.verdicts[baking.version] = record
    ctx.result.bake = record
    if verdict != "failed":
        ctx.log.info("bake over", version=baking.version, verdict=verdict, figures=reason)
        journal.baking = None
        # The window just judged is the kept revision's traffic: the next bake's
        # "before" window, whenever the next revision comes.
        journal.history = [t for t in (baking.start, sample) if t is not None]
        journal.save()
        return False
    baking.verdict, baking.reason = "failed", reason
    journal.save()  # before the rollback: a crash in it is finished by the next pass
    return _roll_back(ctx, journal, baking)


def _roll_back(ctx: PassContext, journal: Journal, baking: Baking) -> bool:
    """Refuse the baked revision and activate the previous one again."""
    version, previous = baking.version, baking.previous
    ctx.result.candidate = version
    if version not in ctx.state.refused:
        ctx.refuse(version, baking.reason)
    if ctx.ms.active_version() == version:
        path = ctx.ms.path_of(previous)
        if path is None:
            raise StoreError(
                f"model {ctx.model.name}: bake of version {version} failed, but the "
                f"previous version {previous} is no longer on disk; {version} stays"
            )
        try:
            admitted = admit(ctx, previous, path, "bake rollback")
        except RefusedError as exc:
            raise StoreError(f"bake of version {version} failed; cannot go back: {exc}") from exc
        ctx.log.error(
            "bake failed; rolling back", version=version, previous=previous, reason=baking.reason
        )
        # Cancelled in here: the journal still says "failed"; the next pass goes on.
        outcome = activation.activate(ctx, admitted)
        ctx.result.candidate = version
        if outcome is not Outcome.ACTIVATED:
            return True  # the server would not take the previous back: activation said why
    journal.baking = None
    journal.save()
    ctx.result.outcome = Outcome.ROLLED_BACK
    ctx.result.error = baking.reason
    return True
