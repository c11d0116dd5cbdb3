"""Storage requests of one unchanged pass of one model on S3: the poll's cost per host
and per interval that docs/push.md sets beside the cost of an idle event source.

    python -m bench.poll_requests

Publishes two revisions to moto's S3 server, syncs once, then counts what a second
(unchanged) `modelsync sync` sends through the suite's counting proxy: for a model
following the newest version, and for one following a channel pointer.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

from tests.backends import S3_ENV
from tests.emulators import start_moto, stop
from tests.faultproxy import FaultProxy
from tests.helpers import model_files, run_cli, write_tree


def main() -> None:
    import boto3

    proc, url = start_moto()
    proxy = FaultProxy(int(url.rsplit(":", 1)[1])).start()
    try:
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", **_keys())
        bucket = "b-" + uuid.uuid4().hex[:8]
        s3.create_bucket(Bucket=bucket)
        source = f"s3://{bucket}/models/m"
        tmp = Path(tempfile.mkdtemp())
        src = write_tree(tmp / "src", model_files(1, 2048))
        opts = [
            "--source-option",
            f"endpoint_url={url}",
            "--source-option",
            "addressing_style=path",
        ]
        for version in ("1", "2"):
            done = run_cli("publish", str(src), source, "--version", version, *opts, env=S3_ENV)
            assert done.returncode == 0, done.stderr
        pointer = json.dumps({"stable": 2}).encode()
        s3.put_object(Bucket=bucket, Key="models/m/_channels/prod.json", Body=pointer)
        for policy, extra in (("newest", ""), ("channel", 'channel = "prod"\n')):
            config = tmp / policy / "modelsync.toml"
            config.parent.mkdir()
            config.write_text(
                f'store = "{tmp / policy / "store"}"\n[[models]]\nname = "m"\n'
                f'source = "{source}"\n{extra}source_options = {{ endpoint_url = '
                f'"{proxy.url}", addressing_style = "path" }}\n'
            )
            for _ in range(2):
                proxy.reset_counts()
                done = run_cli("sync", "--config", str(config), env=S3_ENV)
                assert done.returncode == 0, done.stderr
            with proxy.lock:
                requests = list(proxy.requests)
            print(f"{policy}: {len(requests)} request(s) per unchanged pass: {requests}")
    finally:
        proxy.stop()
        stop(proc)


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


if __name__ == "__main__":
    main()
