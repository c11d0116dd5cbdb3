"""Gates relative to production and to a baseline: the rules, their options, the verdict.

A rule compares one metric of a candidate revision with production (the revision a
host serves, or a channel's stable revision at publish and release time), with a
named baseline revision (a heuristic published like any revision), or with a number::

    ndcg@10 >= production - 0.005     must not fall more than 0.005 below production
    diversity >= production           must not drop
    ndcg@10 >= baseline + 0.02        must beat the baseline by 0.02
    latency_ms <= 12                  an absolute bar

A metric missing on either side means what ``if_missing`` says ("refuse" or "pass");
with no production revision at all (the first one of a channel, a host serving
nothing yet) a rule against production has nothing to compare and holds. Every
failed rule's reason names the rule and both values, so the refusal says why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelsync.manifest import MAX_VERSION

__all__ = ["Check", "GatesConfig", "Rule", "Sides", "Verdict", "evaluate", "parse_rules"]

_NUMBER = r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?"
_RULE = re.compile(
    r"^\s*(?P<metric>[A-Za-z0-9_][A-Za-z0-9_.@:/-]{0,127})\s*(?P<op>>=|<=|>|<)\s*"
    r"(?:(?P<ref>production|baseline)(?:\s*(?P<sign>[+-])\s*(?P<margin>" + _NUMBER + r"))?"
    r"|(?P<number>-?(?:" + _NUMBER + r")))\s*$"
)


def _same(a: float, b: float) -> bool:
    # production 0.42 - 0.005 is 0.41500000000000004 in binary: a candidate at 0.415
    # meets "no more than 0.005 below", as the person who wrote the rule meant.
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


_OPS = {
    ">=": lambda a, b: a >= b or _same(a, b),
    ">": lambda a, b: a > b and not _same(a, b),
    "<=": lambda a, b: a <= b or _same(a, b),
    "<": lambda a, b: a < b and not _same(a, b),
}
# The opposite of each comparison, for the reason of a failed rule.
_FAILED = {">=": "<", ">": "<=", "<=": ">", "<": ">="}

Ref = Literal["production", "baseline", "number"]


@dataclass(frozen=True)
class Rule:
    """``METRIC OP production|baseline|NUMBER [+|- MARGIN]``."""

    metric: str
    op: str
    ref: Ref
    # The number compared with, or the signed margin added to production/baseline.
    offset: float
    text: str

    @classmethod
    def parse(cls, text: str) -> Rule:
        """The rule ``text`` says; ValueError (one line, naming the rule) if it is not one."""
        match = _RULE.match(text)
        if match is None:
            raise ValueError(
                f"gate rule {text[:200]!r} is not METRIC OP production|baseline|NUMBER "
                "[+|- MARGIN] (e.g. 'ndcg@10 >= production - 0.005')"
            )
        if match["number"] is not None:
            ref: Ref = "number"
            offset = float(match["number"])
        else:
            ref = "production" if match["ref"] == "production" else "baseline"
            offset = float(match["margin"] or 0) * (-1 if match["sign"] == "-" else 1)
        if not math.isfinite(offset):
            raise ValueError(f"gate rule {text[:200]!r}: the number is not finite")
        return cls(match["metric"], match["op"], ref, offset, " ".join(text.split()))


class GatesConfig(BaseModel):
    """[models.gates]: relative gate rules, the baseline they name, missing metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # e.g. ["ndcg@10 >= production - 0.005", "ndcg@10 >= baseline + 0.02"].
    rules: tuple[str, ...] = ()
    # The version of the baseline revision (published under the same source).
    baseline: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    # A metric missing on the candidate, production or the baseline: refuse or pass.
    if_missing: Literal["refuse", "pass"] = "refuse"

    @field_validator("rules")
    @classmethod
    def _rules_parse(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            Rule.parse(text)
        return value

    @model_validator(mode="after")
    def _baseline_named(self) -> GatesConfig:
        if self.baseline is None and any(r.ref == "baseline" for r in self.parsed):
            raise ValueError("a rule compares with the baseline: set baseline = VERSION")
        return self

    @property
    def parsed(self) -> tuple[Rule, ...]:
        return tuple(Rule.parse(text) for text in self.rules)

    @property
    def needs_production(self) -> bool:
        return any(r.ref == "production" for r in self.parsed)


@dataclass(frozen=True)
class Sides:
    """The metrics a candidate is judged against; None where there is no such revision."""

    production_version: int | None = None
    production: Mapping[str, float] | None = None
    baseline_version: int | None = None
    baseline: Mapping[str, float] | None = None


@dataclass(frozen=True)
class Check:
    """One rule applied: the values side by side, and why it failed (None if it held)."""

    rule: str
    metric: str
    candidate: float | None
    production: float | None
    baseline: float | None
    failure: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "metric": self.metric,
            "candidate": self.candidate,
            "production": self.production,
            "baseline": self.baseline,
            "passed": self.failure is None,
            "reason": self.failure,
        }


@dataclass(frozen=True)
class Verdict:
    candidate_version: int | None
    production_version: int | None
    baseline_version: int | None
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.failure is None for c in self.checks)

    @property
    def reason(self) -> str:
        """The failed rules' reasons in one line ("" when every rule held)."""
        return "; ".join(c.failure for c in self.checks if c.failure is not None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "candidate_version": self.candidate_version,
            "production_version": self.production_version,
            "baseline_version": self.baseline_version,
            "passed": self.passed,
            "reason": self.reason or None,
            "checks": [c.as_dict() for c in self.checks],
        }


def evaluate(
    gates: GatesConfig,
    candidate: Mapping[str, float],
    sides: Sides,
    candidate_version: int | None = None,
) -> Verdict:
    """Apply every rule of ``gates`` to the ``candidate`` metrics against ``sides``."""
    checks = [_check(rule, gates.if_missing, candidate, sides) for rule in gates.parsed]
    return Verdict(
        candidate_version, sides.production_version, sides.baseline_version, tuple(checks)
    )


def _value(metrics: Mapping[str, float] | None, name: str) -> float | None:
    value = metrics.get(name) if metrics is not None else None
    # A hostile manifest's NaN or infinity is no value: "missing", not a comparison.
    return value if isinstance(value, float | int) and math.isfinite(value) else None


def _check(rule: Rule, if_missing: str, candidate: Mapping[str, float], sides: Sides) -> Check:
    mine = _value(candidate, rule.metric)
    production = _value(sides.production, rule.metric)
    baseline = _value(sides.baseline, rule.metric)

    def result(failure: str | None) -> Check:
        return Check(rule.text, rule.metric, mine, production, baseline, failure)

    if rule.ref == "production" and sides.production is None:
        return result(None)  # no production revision yet: nothing to fall below
    missing = []
    if mine is None:
        missing.append("the candidate")
    reference: float | None = rule.offset
    if rule.ref != "number":
        version = sides.production_version if rule.ref == "production" else sides.baseline_version
        reference = production if rule.ref == "production" else baseline
        if reference is None:
            missing.append(f"{rule.ref} ({version})")
    if missing:
        if if_missing == "pass":
            return result(None)
        return result(
            f"gate '{rule.text}': {rule.metric} is missing on "
            + " and ".join(missing)
            + " (if_missing = refuse)"
        )
    assert mine is not None and reference is not None
    bound = reference if rule.ref == "number" else reference + rule.offset
    if _OPS[rule.op](mine, bound):
        return result(None)
    if rule.ref == "number":
        return result(
            f"gate '{rule.text}': candidate {rule.metric} = {mine:g} {_FAILED[rule.op]} {bound:g}"
        )
    version = sides.production_version if rule.ref == "production" else sides.baseline_version
    return result(
        f"gate '{rule.text}': candidate {rule.metric} = {mine:g} {_FAILED[rule.op]} "
        f"{bound:g} ({rule.ref} {version}: {reference:g})"
    )


def parse_rules(rules: Sequence[str], baseline: int | None, if_missing: str) -> GatesConfig:
    """A GatesConfig from command-line flags; ValueError (one line) when it is not one."""
    from pydantic import ValidationError

    try:
        return GatesConfig(rules=tuple(rules), baseline=baseline, if_missing=if_missing)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None
