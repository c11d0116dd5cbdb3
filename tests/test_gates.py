"""modelsync.gates: the rule language, its options, and the verdict's reasons."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from modelsync.gates import GatesConfig, Rule, Sides, evaluate, parse_rules
from tests.helpers import run_cli

PRODUCTION = Sides(7, {"ndcg@10": 0.42, "diversity": 0.30}, 5, {"ndcg@10": 0.39})


def _gates(*rules: str, baseline: int | None = 5, if_missing: str = "refuse") -> GatesConfig:
    return parse_rules(rules, baseline, if_missing)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("ndcg@10 >= production - 0.005", ("ndcg@10", ">=", "production", -0.005)),
        ("diversity>=production", ("diversity", ">=", "production", 0.0)),
        ("ndcg@10 >= baseline + 0.02", ("ndcg@10", ">=", "baseline", 0.02)),
        ("latency_ms <= 12", ("latency_ms", "<=", "number", 12.0)),
        ("loss < -1.5e-3", ("loss", "<", "number", -0.0015)),
    ],
)
def test_rules_parse(text: str, rule: tuple[str, str, str, float]) -> None:
    """Each documented form parses into metric, comparison, reference and offset."""
    parsed = Rule.parse(text)
    assert (parsed.metric, parsed.op, parsed.ref, parsed.offset) == rule


@pytest.mark.parametrize(
    "text",
    ["", "ndcg@10", "ndcg@10 == 0.4", "ndcg@10 >= prod", "x >= production * 2", "x >= 1e999"],
)
def test_bad_rules_are_one_line_errors(text: str) -> None:
    """A rule that is not one is refused with a one-line error naming it."""
    with pytest.raises(ValueError, match="gate rule") as err:
        Rule.parse(text)
    assert "\n" not in str(err.value)


def test_a_baseline_rule_needs_a_baseline() -> None:
    """A rule naming the baseline without `baseline = VERSION` is a configuration error."""
    with pytest.raises(ValidationError, match="set baseline"):
        GatesConfig(rules=("ndcg@10 >= baseline",))
    with pytest.raises(ValueError, match="set baseline"):
        parse_rules(["ndcg@10 >= baseline"], None, "refuse")


def test_a_better_candidate_passes_every_rule() -> None:
    """A candidate within the margin of production, above the baseline, passes."""
    gates = _gates("ndcg@10 >= production - 0.005", "ndcg@10 >= baseline + 0.02")
    verdict = evaluate(gates, {"ndcg@10": 0.415, "diversity": 0.3}, PRODUCTION, 8)
    assert verdict.passed and verdict.reason == ""
    assert [c.as_dict()["passed"] for c in verdict.checks] == [True, True]


def test_the_reason_names_the_rule_and_both_values() -> None:
    """A failed rule's reason says the rule, the candidate's value, the bound and production's."""
    verdict = evaluate(_gates("ndcg@10 >= production - 0.005"), {"ndcg@10": 0.40}, PRODUCTION, 8)
    assert not verdict.passed
    assert verdict.reason == (
        "gate 'ndcg@10 >= production - 0.005': candidate ndcg@10 = 0.4 < 0.415 (production 7: 0.42)"
    )
    verdict = evaluate(_gates("ndcg@10 >= baseline + 0.02"), {"ndcg@10": 0.40}, PRODUCTION, 8)
    assert "0.4 < 0.41 (baseline 5: 0.39)" in verdict.reason
    verdict = evaluate(_gates("latency_ms <= 12"), {"latency_ms": 13}, PRODUCTION, 8)
    assert verdict.reason == "gate 'latency_ms <= 12': candidate latency_ms = 13 > 12"


def test_must_not_drop() -> None:
    """'diversity >= production' refuses any drop and accepts equal."""
    gates = _gates("diversity >= production")
    assert evaluate(gates, {"diversity": 0.30}, PRODUCTION).passed
    assert not evaluate(gates, {"diversity": 0.2999}, PRODUCTION).passed


def test_missing_metrics_follow_if_missing() -> None:
    """A metric missing on either side refuses (naming the side) or passes, as configured."""
    rule = "diversity >= baseline"
    verdict = evaluate(_gates(rule), {"diversity": 0.5}, PRODUCTION)
    assert verdict.reason == (
        "gate 'diversity >= baseline': diversity is missing on baseline (5) (if_missing = refuse)"
    )
    verdict = evaluate(_gates("recall >= production"), {}, PRODUCTION)
    assert "missing on the candidate and production (7)" in verdict.reason
    assert evaluate(_gates(rule, if_missing="pass"), {"diversity": 0.5}, PRODUCTION).passed


def test_no_production_yet_holds() -> None:
    """Without a production revision (a first release) rules against production hold."""
    verdict = evaluate(_gates("ndcg@10 >= production"), {"ndcg@10": 0.1}, Sides())
    assert verdict.passed


def test_non_finite_values_are_missing() -> None:
    """A NaN or infinite value is treated as missing, never compared."""
    sides = Sides(7, {"ndcg@10": float("nan")})
    verdict = evaluate(_gates("ndcg@10 >= production"), {"ndcg@10": float("inf")}, sides)
    assert "missing on the candidate and production (7)" in verdict.reason


def test_a_bad_rule_in_the_config_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    """[models.gates] with a bad rule: exit 2, one line naming the file, key and rule."""
    config = tmp_path / "bad.toml"
    config.write_text(
        f'store = "{tmp_path}/models"\n[[models]]\nname = "r"\nsource = "file://{tmp_path}/b/r"\n'
        '[models.gates]\nrules = ["ndcg >= prod"]\n'
    )
    done = run_cli("sync", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"modelsync: config error: {config}: models[0].gates.rules: gate rule 'ndcg >= prod' "
        "is not METRIC OP production|baseline|NUMBER [+|- MARGIN] (e.g. 'ndcg@10 >= "
        "production - 0.005')"
    )
    assert not (tmp_path / "models").exists()
