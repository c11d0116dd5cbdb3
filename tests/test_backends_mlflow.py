"""MLflow's Model Registry as a source: a real `mlflow server` names the version (by
alias or latest), the bytes come from moto S3 or local disk through modelsync's own
backends; hostile registry answers are refused in one line."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from modelsync.backends.mlflow import MAX_ANSWER_BYTES
from modelsync.cancel import CancelToken
from modelsync.config import ModelConfig
from modelsync.publish import publish
from modelsync.sync import Outcome, PassResult, Syncer
from modelsync.volume import Store
from tests.backends import S3Backend
from tests.helpers import model_files, put_revision, run_cli, write_tree
from tests.httpstub import http_stub
from tests.mlflowserver import REPO, Registry

pytestmark = pytest.mark.timeout(600)


def _model(source: str, stores: list[str], **extra: Any) -> ModelConfig:
    options: dict[str, Any] = {"allowed_stores": stores}
    for key in ("store_options", "channel_store"):
        if key in extra:
            options[key] = extra.pop(key)
    return ModelConfig(name="ranker", source=source, source_options=options, **extra)


def _syncer(tmp_path: Path) -> Syncer:
    return Syncer(Store(tmp_path / "store", tmp_path / ".state"))


def _sync(syncer: Syncer, model: ModelConfig) -> PassResult:
    return syncer.sync(model, CancelToken())


def _served(store: Path, version: int) -> bytes:
    return (store / "ranker" / str(version) / "saved_model.pb").read_bytes()


def _publish_s3(tmp_path: Path, s3: S3Backend, version: int, seed: int) -> str:
    src = write_tree(tmp_path / f"src{version}", model_files(seed))
    publish(src, s3.url, version=version, source_options=s3.options())
    return f"{s3.url}/{version}"


def test_the_host_follows_the_alias_forward_and_back_on_s3(
    tmp_path: Path, s3_backend: S3Backend, mlflow_registry: Registry
) -> None:
    """Moving the alias is a release: the host serves what it names, and goes back."""
    name = f"ranker-{tmp_path.name[-12:]}"
    one = mlflow_registry.register(name, _publish_s3(tmp_path, s3_backend, 1000, seed=1))
    two = mlflow_registry.register(name, _publish_s3(tmp_path, s3_backend, 2000, seed=2))
    mlflow_registry.set_alias(name, "champion", one)
    model = _model(
        mlflow_registry.source_url(name, "champion"),
        [f"s3://{s3_backend.bucket}/models"],
        store_options=s3_backend.options(),
    )
    store = tmp_path / "store"
    syncer = _syncer(tmp_path)
    try:
        first = _sync(syncer, model)
        assert (first.outcome, first.active) == (Outcome.ACTIVATED, 1000)
        assert _served(store, 1000) == b"graph-1"
        assert _sync(syncer, model).outcome is Outcome.UNCHANGED

        mlflow_registry.set_alias(name, "champion", two)
        moved = _sync(syncer, model)
        assert (moved.outcome, moved.active) == (Outcome.ACTIVATED, 2000)
        assert _served(store, 2000) == b"graph-2"

        mlflow_registry.set_alias(name, "champion", one)
        back = _sync(syncer, model)
        assert (back.outcome, back.active) == (Outcome.ACTIVATED, 1000)
        assert os.readlink(store / "ranker" / "current") == "1000"
    finally:
        syncer.close()


def test_a_model_without_alias_follows_the_latest_version(
    tmp_path: Path, s3_backend: S3Backend, mlflow_registry: Registry
) -> None:
    """mlflow+http://host/<model> serves the registry's newest ready version."""
    name = f"latest-{tmp_path.name[-12:]}"
    mlflow_registry.register(name, _publish_s3(tmp_path, s3_backend, 1000, seed=1))
    model = _model(
        mlflow_registry.source_url(name),
        [f"s3://{s3_backend.bucket}/models"],
        store_options=s3_backend.options(),
    )
    syncer = _syncer(tmp_path)
    try:
        first = _sync(syncer, model)
        assert first.active == 1000, first.error
        mlflow_registry.register(name, _publish_s3(tmp_path, s3_backend, 3000, seed=3))
        assert _sync(syncer, model).active == 3000
    finally:
        syncer.close()


def test_publish_registers_the_revision_and_moves_the_alias(
    tmp_path: Path, mlflow_registry: Registry
) -> None:
    """`publish --mlflow` on local disk (an MLflow run's artifacts) and a host follows."""
    name = f"cli-{tmp_path.name[-12:]}"
    run_id, artifacts = mlflow_registry.new_run()
    # The manifest names the model by the store's last segment: the served name.
    bucket = f"{artifacts}/ranker"
    for version, seed in ((1000, 1), (2000, 2)):
        src = write_tree(tmp_path / f"src{version}", model_files(seed))
        done = run_cli(
            "publish",
            str(src),
            bucket,
            "--version",
            str(version),
            "--mlflow",
            mlflow_registry.source_url(name, "champion"),
            "--mlflow-run",
            run_id,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(version)
        answer = mlflow_registry.call(
            "GET", f"2.0/mlflow/registered-models/alias?name={name}&alias=champion"
        )
        assert answer["model_version"]["source"] == f"{bucket}/{version}"
    model = _model(mlflow_registry.source_url(name, "champion"), [artifacts])
    syncer = _syncer(tmp_path)
    try:
        result = _sync(syncer, model)
        assert (result.outcome, result.active) == (Outcome.ACTIVATED, 2000)
        assert _served(tmp_path / "store", 2000) == b"graph-2"
    finally:
        syncer.close()


def test_an_artifact_location_outside_the_allowed_stores_is_refused(
    tmp_path: Path, s3_backend: S3Backend, mlflow_registry: Registry
) -> None:
    """An alias moved to bytes elsewhere fails the pass in one line; the host keeps
    what it serves and follows the alias again once it names an allowed revision."""
    name = f"outside-{tmp_path.name[-12:]}"
    good = mlflow_registry.register(name, _publish_s3(tmp_path, s3_backend, 1000, seed=1))
    evil = S3Backend(s3_backend.endpoint, s3_backend.bucket, "elsewhere/ranker")
    src = write_tree(tmp_path / "evil", model_files(666))
    publish(src, evil.url, version=5000, source_options=evil.options())
    bad = mlflow_registry.register(name, f"{evil.url}/5000")
    mlflow_registry.set_alias(name, "champion", good)
    model = _model(
        mlflow_registry.source_url(name, "champion"),
        [f"s3://{s3_backend.bucket}/models"],
        store_options=s3_backend.options(),
    )
    syncer = _syncer(tmp_path)
    try:
        assert _sync(syncer, model).active == 1000
        mlflow_registry.set_alias(name, "champion", bad)
        refused = _sync(syncer, model)
        assert refused.outcome is Outcome.FAILED and refused.active == 1000
        assert refused.error is not None and "outside allowed_stores" in refused.error
        assert "\n" not in refused.error
        assert not (tmp_path / "store" / "ranker" / "5000").exists()
        newer = mlflow_registry.register(name, _publish_s3(tmp_path, s3_backend, 2000, seed=2))
        mlflow_registry.set_alias(name, "champion", newer)
        assert _sync(syncer, model).active == 2000
    finally:
        syncer.close()


def test_artifacts_without_a_manifest_wait_unless_storage_checksums_are_chosen(
    tmp_path: Path, mlflow_registry: Registry
) -> None:
    """A version whose artifacts carry no modelsync manifest is not served; a model
    that opts into storage checksums (complete_marker) serves it."""
    name = f"bare-{tmp_path.name[-12:]}"
    run_id, artifacts = mlflow_registry.new_run()
    bare = Path(artifacts.removeprefix("file://")) / "ranker"
    put_revision(bare, 1000, model_files(1), manifest=False)
    version = mlflow_registry.register(name, f"{artifacts}/ranker/1000", run_id)
    mlflow_registry.set_alias(name, "champion", version)
    url = mlflow_registry.source_url(name, "champion")
    syncer = _syncer(tmp_path)
    try:
        waits = _sync(syncer, _model(url, [artifacts]))
        assert waits.outcome is Outcome.UNCHANGED and waits.active is None
        marker = _model(url, [artifacts], complete_marker="saved_model.pb", settle=0)
        served = _sync(syncer, marker)
        assert (served.outcome, served.active) == (Outcome.ACTIVATED, 1000)
    finally:
        syncer.close()


# -- hostile registry answers (a scripted server in the registry's place) ----------------

_VERSION = {"name": "ranker", "version": "1", "source": "file:///srv/models/ranker/1000"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"model_version": {"x": "' + b"a" * MAX_ANSWER_BYTES + b'"}}', "answer over"),
        (b'{"model_version": ' * 3000 + b"1" + b"}" * 3000, "nested too deep"),
        (
            json.dumps({"model_version": {**_VERSION, "version": 1}}).encode(),
            "model_version.version",
        ),
        (
            json.dumps({"model_version": {**_VERSION, "source": ["x"]}}).encode(),
            "model_version.source",
        ),
        (
            json.dumps({"model_version": {**_VERSION, "version": "-1"}}).encode(),
            "model_version.version",
        ),
        (b"<html>not json</html>", "not JSON"),
        (json.dumps({**_VERSION}).encode(), "model_version"),
        (
            json.dumps(
                {"model_version": {**_VERSION, "source": "file:///etc/ranker/1000"}}
            ).encode(),
            "outside allowed_stores",
        ),
        (
            json.dumps(
                {"model_version": {**_VERSION, "source": "file:///srv/models/../etc/1"}}
            ).encode(),
            "refused artifact location",
        ),
        (
            json.dumps(
                {"model_version": {**_VERSION, "source": "file:///srv/models/%2E%2E/etc/1"}}
            ).encode(),
            "refused artifact location",
        ),
        (
            json.dumps(
                {"model_version": {**_VERSION, "source": "file:///srv/models/./ranker/1"}}
            ).encode(),
            "refused artifact location",
        ),
        (
            json.dumps(
                {"model_version": {**_VERSION, "source": "file:///srv/models/ranker/v1"}}
            ).encode(),
            "not a modelsync revision",
        ),
        (
            json.dumps({"model_version": {**_VERSION, "name": "other"}}).encode(),
            "for model 'other'",
        ),
    ],
)
def test_hostile_registry_answers_are_refused_in_one_line(
    tmp_path: Path, body: bytes, says: str
) -> None:
    """Huge, deep, wrongly typed or misplaced answers fail the pass with one line."""
    with http_stub(lambda _m, _p, _b: (200, body)) as (url, _seen):
        model = _model(f"mlflow+{url}/ranker@champion", ["file:///srv/models"])
        syncer = _syncer(tmp_path)
        try:
            result = _sync(syncer, model)
        finally:
            syncer.close()
    assert result.outcome is Outcome.FAILED and result.active is None
    assert result.error is not None and says in result.error, result.error
    assert "\n" not in result.error and len(result.error) < 600


def test_an_idle_pass_costs_one_registry_request(tmp_path: Path) -> None:
    """The registry is asked once per pass; the artifact store only when it moved."""
    bucket = tmp_path / "bucket" / "ranker"
    put_revision(bucket, 1000, model_files(1))
    answer = {"model_version": {**_VERSION, "source": f"file://{bucket}/1000"}}
    with http_stub(lambda _m, _p, _b: (200, json.dumps(answer).encode())) as (url, seen):
        model = _model(f"mlflow+{url}/ranker@champion", [f"file://{tmp_path / 'bucket'}"])
        syncer = _syncer(tmp_path)
        try:
            assert _sync(syncer, model).active == 1000
            before = len(seen)
            assert _sync(syncer, model).outcome is Outcome.UNCHANGED
        finally:
            syncer.close()
    assert len(seen) - before == 1
    assert seen[-1][1] == "/api/2.0/mlflow/registered-models/alias?name=ranker&alias=champion"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({}, "allowed_stores"),
        ({"allowed_stores": []}, "allowed_stores"),
        ({"allowed_stores": ["ftp://x/y"]}, "unsupported source URL"),
        ({"allowed_stores": ["mlflow+http://h/m"]}, "a registry, not an artifact store"),
        ({"allowed_stores": ["s3://b/m"], "colour": 1}, "unknown key"),
    ],
)
def test_bad_options_are_one_line_config_errors(
    tmp_path: Path, options: dict[str, Any], says: str
) -> None:
    """A misconfigured MLflow source exits 2 naming the key."""
    config = tmp_path / "modelsync.toml"
    lines = [f'store = "{tmp_path / "store"}"', "[[models]]", 'name = "ranker"']
    lines.append('source = "mlflow+http://127.0.0.1:1/ranker@champion"')
    lines.append(f"source_options = {json.dumps(options)}".replace('": ', '" = '))
    config.write_text("\n".join(lines) + "\n")
    done = run_cli("sync", "--config", str(config))
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "source_options" in done.stderr


@pytest.mark.parametrize(
    "url",
    ["mlflow+http://h:5000/", "mlflow+http://h:5000/a b", "mlflow+ftp://h/m", "mlflow+http://h/m@"],
)
def test_malformed_registry_urls_are_refused(url: str) -> None:
    """A registry URL not of the form mlflow+http(s)://host/model[@alias] is a config error."""
    with pytest.raises(ValueError, match=r"mlflow|unsupported"):
        ModelConfig(name="ranker", source=url, source_options={"allowed_stores": ["s3://b/m"]})


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.M | re.S)


def test_the_worked_example_runs(
    tmp_path: Path, s3_backend: S3Backend, mlflow_registry: Registry
) -> None:
    """docs/pipelines.md's MLflow publish, config and sync blocks work as written."""
    page = (REPO / "docs" / "pipelines.md").read_text()
    text = page[page.index("## MLflow Model Registry as a source") :]
    write_tree(tmp_path / "ranker-v2", model_files(2))  # the block's ./ranker-v2
    swaps = {
        "http://minio.storage:9000": s3_backend.endpoint,
        "s3://ml-artifacts/": f"s3://{s3_backend.bucket}/",
        "mlflow+http://mlflow.example:5000": f"mlflow+{mlflow_registry.url}",
        "/data/models": str(tmp_path / "store"),
    }

    def local(block: str) -> str:
        for old, new in swaps.items():
            block = block.replace(old, new)
        return block

    publish_block, sync_block = _blocks(text, "sh")[:2]
    (tmp_path / "modelsync.toml").write_text(local(_blocks(text, "toml")[0]))
    for block in (publish_block, sync_block):
        argv = shlex.split(local(block).replace("\\\n", " "), comments=True)
        assert argv[0] == "modelsync"
        done = run_cli(*argv[1:], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        if block is publish_block:
            version = int(done.stdout.strip())
    assert _served(tmp_path / "store", version) == b"graph-2"


def test_required_signatures_hold_for_what_the_alias_names(
    tmp_path: Path, mlflow_registry: Registry
) -> None:
    """With signatures required, an alias moved to an unsigned revision is refused and
    the host keeps the signed one it serves."""
    from modelsync.signing import generate_keypair

    name = f"signed-{tmp_path.name[-12:]}"
    run_id, artifacts = mlflow_registry.new_run()
    store = f"{artifacts}/ranker"
    key, public = tmp_path / "key.pem", tmp_path / "key.pub"
    generate_keypair(key, public)
    src1 = write_tree(tmp_path / "src1", model_files(1))
    publish(src1, store, version=1000, sign_key=key)
    publish(write_tree(tmp_path / "src2", model_files(2)), store, version=2000)
    signed = mlflow_registry.register(name, f"{store}/1000", run_id)
    unsigned = mlflow_registry.register(name, f"{store}/2000", run_id)
    mlflow_registry.set_alias(name, "champion", signed)
    verify = {"public_keys": [str(public)], "require_signature": True}
    model = _model(mlflow_registry.source_url(name, "champion"), [artifacts], verify=verify)
    syncer = _syncer(tmp_path)
    try:
        assert _sync(syncer, model).active == 1000
        mlflow_registry.set_alias(name, "champion", unsigned)
        result = _sync(syncer, model)
        assert result.active == 1000
        assert not (tmp_path / "store" / "ranker" / "2000").exists()
        refused = syncer.store.model("ranker", model.layout).load_state().refused
        assert "signature" in refused[2000]
    finally:
        syncer.close()


@pytest.mark.parametrize("extra", [{"channel": "prod"}, {"report": True}])
def test_a_channel_or_reports_on_a_registry_source_is_a_config_error(
    extra: dict[str, Any],
) -> None:
    """Without channel_store a registry source holds no channel pointers or reports:
    said at load, naming the keys."""
    with pytest.raises(ValueError, match=r"channel/report: a mlflow source holds no"):
        _model("mlflow+http://h:5000/ranker@champion", ["s3://b/models"], **extra)


def _hosts(pointer_path: Path) -> tuple[str, str]:
    """A host in the canary's cohort and one outside it, for the pointer on disk."""
    from modelsync.channel import Pointer, in_cohort

    canary = Pointer.parse(pointer_path.read_bytes(), "p").canary
    assert canary is not None
    names = [f"pod-{i}" for i in range(200)]
    inside = next(h for h in names if in_cohort("ranker", canary, h))
    outside = next(h for h in names if not in_cohort("ranker", canary, h))
    return inside, outside


def test_a_channel_adds_a_canary_on_top_of_the_alias(
    tmp_path: Path, mlflow_registry: Registry
) -> None:
    """The alias is the channel's stable on every host; a canary started against the
    store URL is served by its cohort; a halted canary returns to the alias's version;
    moving the alias moves stable, whatever the pointer's stable says."""
    from modelsync.reports import write_report
    from modelsync.sources import open_source

    name = f"chan-{tmp_path.name[-12:]}"
    # MLflow registers local artifacts only under a run's artifact location.
    run_id, artifacts = mlflow_registry.new_run()
    store_url = f"{artifacts}/ranker"
    for version in (1000, 2000, 3000):
        src = write_tree(tmp_path / f"src{version}", model_files(version))
        publish(src, store_url, version=version)
    one = mlflow_registry.register(name, f"{store_url}/1000", run_id)
    three = mlflow_registry.register(name, f"{store_url}/3000", run_id)
    mlflow_registry.set_alias(name, "champion", one)
    release = ("--source", store_url, "--channel", "prod")
    assert run_cli("release", "promote", "ranker", "--version", "1000", *release).returncode == 0
    started = run_cli("release", "start", "ranker", "2000", "--percent", "30", *release)
    assert started.returncode == 0, started.stderr
    bucket = Path(store_url.removeprefix("file://"))
    inside, outside = _hosts(bucket / "_channels" / "prod.json")
    model = ModelConfig(
        name="ranker",
        source=mlflow_registry.source_url(name, "champion"),
        source_options={
            "allowed_stores": [artifacts],
            "channel_store": store_url,
        },
        channel="prod",
    )
    canary = Syncer(Store(tmp_path / "a", tmp_path / ".a"), identity=inside)
    stable = Syncer(Store(tmp_path / "b", tmp_path / ".b"), identity=outside)
    try:
        assert _sync(canary, model).active == 2000
        assert _served(tmp_path / "a", 2000) == model_files(2000)["saved_model.pb"]
        assert _sync(stable, model).active == 1000

        halted = _sync(canary, model)
        assert halted.channel is not None
        write_report(
            open_source(store_url),
            "ranker",
            2000,
            inside,
            "rolled_back",
            "oom",
            channel=halted.channel,
        )
        back = _sync(canary, model)
        assert (back.active, back.channel and back.channel.halted) == (1000, True), back.error
        assert os.readlink(tmp_path / "a" / "ranker" / "current") == "1000"

        # The pointer still says stable 1000; the alias moved to 3000 and wins.
        mlflow_registry.set_alias(name, "champion", three)
        assert _sync(stable, model).active == 3000
        assert _sync(canary, model).active == 3000
        assert _served(tmp_path / "b", 3000) == model_files(3000)["saved_model.pb"]
    finally:
        canary.close()
        stable.close()


def test_channel_store_must_lie_under_an_allowed_store() -> None:
    """channel_store outside allowed_stores is a config error naming the key."""
    with pytest.raises(
        ValueError,
        match=r"channel_store: .file:///elsewhere/ranker. is not under one of allowed_stores",
    ):
        _model(
            "mlflow+http://h:5000/ranker@champion",
            ["file:///srv/models"],
            channel="prod",
            channel_store="file:///elsewhere/ranker",
        )


def test_signed_pointer_rules_hold_for_a_channel_on_an_alias(
    tmp_path: Path, mlflow_registry: Registry
) -> None:
    """With signatures required, an unsigned pointer in channel_store fails the pass in
    one line and the host keeps the alias's version; a signed one adds its canary."""
    from modelsync.signing import generate_keypair

    name = f"signch-{tmp_path.name[-12:]}"
    run_id, artifacts = mlflow_registry.new_run()
    store_url = f"{artifacts}/ranker"
    key, public = tmp_path / "key.pem", tmp_path / "key.pub"
    generate_keypair(key, public)
    for version in (1000, 2000):
        src = write_tree(tmp_path / f"src{version}", model_files(version))
        publish(src, store_url, version=version, sign_key=key)
    mlflow_registry.set_alias(
        name, "champion", mlflow_registry.register(name, f"{store_url}/1000", run_id)
    )
    release = ("ranker", "--source", store_url, "--channel", "prod")
    unsigned_start = ("release", "start", release[0], "2000", "--percent", "100", *release[1:])
    assert run_cli(*unsigned_start).returncode == 0
    model = _model(
        mlflow_registry.source_url(name, "champion"),
        [artifacts],
        channel_store=store_url,
        channel="prod",
        report=True,
        verify={"public_keys": [str(public)], "require_signature": True},
    )
    syncer = _syncer(tmp_path)
    try:
        unsigned = _sync(syncer, model)
        assert unsigned.outcome is Outcome.FAILED and unsigned.active is None
        assert "\n" not in str(unsigned.error) and "sign" in str(unsigned.error)
        assert not (tmp_path / "store" / "ranker").exists() or not any(
            (tmp_path / "store" / "ranker").iterdir()
        )

        replaced = run_cli("release", "set", *release, "--stable", "1000", "--sign-key", str(key))
        assert replaced.returncode == 0, replaced.stderr
        signed = run_cli(
            "release",
            "start",
            release[0],
            "2000",
            "--percent",
            "100",
            *release[1:],
            "--sign-key",
            str(key),
        )
        assert signed.returncode == 0, signed.stderr
        canary = _sync(syncer, model)
        assert (canary.outcome, canary.active) == (Outcome.ACTIVATED, 2000), canary.error
        report = Path(store_url.removeprefix("file://")) / "_reports" / "2000"
        assert [p.name for p in report.iterdir() if p.suffix == ".json"]
    finally:
        syncer.close()


def test_registry_credentials_come_from_the_environment_and_never_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Red team round 4b: `user:password@` in the source URL is refused without the
    password in the message (the URL is shown on /status and in every log line);
    MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, as MLflow's client reads
    them, reach the registry as a Basic Authorization header."""
    import base64

    with pytest.raises(ValueError) as refused:
        ModelConfig(
            name="ranker",
            source="mlflow+http://ops:s3cret-pw@h:5000/ranker@champion",
            source_options={"allowed_stores": ["s3://b/m"]},
        )
    assert "s3cret-pw" not in str(refused.value) and "MLFLOW_TRACKING_USERNAME" in str(
        refused.value
    )
    bucket = tmp_path / "bucket" / "ranker"
    put_revision(bucket, 1000, model_files(1))
    answer = {"model_version": {**_VERSION, "source": f"file://{bucket}/1000"}}
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ops")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret:pw@")
    said: list[str] = []
    with http_stub(lambda _m, _p, _b: (200, json.dumps(answer).encode()), record_headers=said) as (
        url,
        _seen,
    ):
        model = _model(f"mlflow+{url}/ranker@champion", [f"file://{tmp_path / 'bucket'}"])
        syncer = _syncer(tmp_path)
        try:
            result = _sync(syncer, model)
        finally:
            syncer.close()
    assert result.active == 1000, result.error
    assert said and set(said) == {"Basic " + base64.b64encode(b"ops:s3cret:pw@").decode()}
