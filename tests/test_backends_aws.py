"""The botocore session behind s3:// and SQS (backends/_aws.py): the operator's
profile and region are honoured, a missing profile is one line, and `sync` runs
without boto3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelsync.backends._aws import session
from tests.backends import S3Backend


def _config(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "aws-config"
    config.write_text("[profile ops]\nregion = eu-west-3\n")
    return {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}


def test_a_profile_gives_its_region_and_an_explicit_region_wins(tmp_path: Path) -> None:
    """The profile's region is the session's; `region` in source_options overrides it."""
    env = _config(tmp_path)
    code = (
        "from modelsync.backends._aws import session\n"
        "print(session('ops', None).get_config_variable('region'))\n"
        "print(session('ops', 'ap-south-1').get_config_variable('region'))\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["eu-west-3", "ap-south-1"]
    assert session(None, "us-east-2").get_config_variable("region") == "us-east-2"


def test_sync_from_s3_never_imports_boto3(tmp_path: Path, s3_backend: S3Backend) -> None:
    """A fetching `sync` from moto lands the bytes without boto3 or requests in the
    process (their imports were 0.14 s and 17 ms of every S3 command); `publish`
    may still use boto3's transfer manager."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(4096))
    env = {**os.environ, **s3_backend.env()}
    source = f"s3://{s3_backend.bucket}/m"
    publish = [sys.executable, "-m", "modelsync", "publish", str(model), source, "--version", "1"]
    done = subprocess.run(publish, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    store = tmp_path / "store"
    sync = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "modelsync",
        "sync",
        "--store",
        str(store),
        "--state-dir",
        str(tmp_path / "state"),
        "--model",
        "m",
        "--source",
        source,
    ]
    done = subprocess.run(sync, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (store / "m" / "1" / "weights.bin").read_bytes() == (model / "weights.bin").read_bytes()
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()]
    assert "botocore.session" in imported
    assert not [name for name in imported if name.split(".")[0] in ("boto3", "requests")]


def test_a_missing_profile_is_one_line_naming_it(tmp_path: Path, s3_backend: S3Backend) -> None:
    """A profile the config does not have fails the sync in one line that names it."""
    env = {**os.environ, **s3_backend.env(), **_config(tmp_path), "AWS_PROFILE": "nosuch"}
    sync = [
        sys.executable,
        "-m",
        "modelsync",
        "sync",
        "--store",
        str(tmp_path / "store"),
        "--state-dir",
        str(tmp_path / "state"),
        "--model",
        "m",
        "--source",
        f"s3://{s3_backend.bucket}/m",
    ]
    done = subprocess.run(sync, env=env, capture_output=True, text=True)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "nosuch" in line]
    assert len(lines) == 1, done.stderr
    assert "The config profile (nosuch) could not be found" in lines[0]
    assert not (tmp_path / "store" / "m").exists()


def test_the_s3_client_asks_for_checksums_and_its_engine_reads_the_bytes(
    s3_backend: S3Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s3_client's client lists and presigns against moto, and its engine's GET of the
    presigned URL brings back the object's bytes."""
    from modelsync.backends._aws import s3_client
    from modelsync.backends.s3 import S3Options

    for key, value in s3_backend.env().items():
        monkeypatch.setenv(key, value)
    payload = os.urandom(70_000)
    s3_backend.put("1/w.bin", payload)
    options = S3Options(endpoint_url=s3_backend.endpoint)
    client, _tracker, engine = s3_client(options, s3_backend.url, s3_backend.bucket)
    try:
        key = f"{s3_backend.prefix}/1/w.bin"
        listed = client.list_objects_v2(Bucket=s3_backend.bucket, Prefix=s3_backend.prefix)
        assert [o["Key"] for o in listed["Contents"]] == [key]
        url = client.generate_presigned_url(
            "get_object", Params={"Bucket": s3_backend.bucket, "Key": key}
        )
        got = bytearray()
        engine.get(url, {}, got.extend, None, key)
        assert bytes(got) == payload
    finally:
        engine.close()
        client.close()
