"""Which objects wake which model: manifests, complete-markers and channel pointers
under the model's own prefix and bucket; nothing else."""

from __future__ import annotations

from modelsync.config import ModelConfig
from modelsync.events.match import Hit, Matcher, ObjectEvent


def _event(bucket: str, key: str) -> ObjectEvent:
    return ObjectEvent(bucket, key, None, "id")


def test_only_completing_objects_of_the_model_wake_it() -> None:
    """A manifest wakes its model with its version; the revision's other files, another
    prefix (even one that starts the same), another bucket and non-versions do not."""
    matcher = Matcher(
        [
            ModelConfig(name="ranker", source="s3://b/models/ranker"),
            ModelConfig(name="rank", source="s3://b/models/rank"),
        ]
    )
    assert matcher.match(_event("b", "models/ranker/7/modelsync-manifest.json")) == [
        Hit("ranker", 7)
    ]
    for key in (
        "models/ranker/7/weights.bin",
        "models/ranker/latest/modelsync-manifest.json",
        "models/ranker/_reports/7/h.json",
        "models/ranker/_channels/prod.json",
        "models/rankerx/7/modelsync-manifest.json",
    ):
        assert matcher.match(_event("b", key)) == [], key
    assert matcher.match(_event("other", "models/ranker/7/modelsync-manifest.json")) == []


def test_a_channel_pointer_and_a_marker_wake_their_models() -> None:
    """A model following a channel wakes on its pointer (any version); a producer
    without manifests wakes on its complete_marker; Azure sources match by account
    and container."""
    matcher = Matcher(
        [
            ModelConfig(name="ranker", source="gs://b/m/ranker", channel="prod"),
            ModelConfig(name="tfx", source="gs://b/m/tfx", complete_marker="saved_model.pb"),
            ModelConfig(name="az", source="az://acct/cont/m/az"),
        ]
    )
    assert matcher.match(_event("b", "m/ranker/_channels/prod.json")) == [Hit("ranker", None)]
    assert matcher.match(_event("b", "m/ranker/_channels/canary.json")) == []
    assert matcher.match(_event("b", "m/tfx/3/saved_model.pb")) == [Hit("tfx", 3)]
    assert matcher.match(_event("b", "m/tfx/3/modelsync-manifest.json")) == []
    assert matcher.match(_event("acct/cont", "m/az/5/modelsync-manifest.json")) == [Hit("az", 5)]
