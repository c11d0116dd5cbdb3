"""botocore's data loader without its walk of every service per client
(backends/_aws_loader.py): the same answers as botocore's full list for every name,
AWS_DATA_PATH honoured, an unknown service still named in one error with the known
ones, and a first S3 client made without listing the data directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import botocore.exceptions
import botocore.loaders
import botocore.session
import pytest

from modelsync.backends._aws import session

_DATA = Path(botocore.loaders.Loader.BUILTIN_DATA_PATH)


@pytest.mark.parametrize("type_name", ["service-2", "endpoint-rule-set-1", "paginators-1"])
def test_membership_answers_as_botocores_full_list_for_every_name(type_name: str) -> None:
    """Every directory under botocore/data, and names that are not there, answer `in`
    exactly as the list botocore's own loader walks for."""
    quick = session(None, None).get_component("data_loader")
    plain = botocore.loaders.create_loader()
    full = set(plain.list_available_services(type_name))
    services = quick.list_available_services(type_name)
    names = [*sorted(p.name for p in _DATA.iterdir()), "no-such-service", "", "..", "s3/x"]
    assert [n for n in names if n in services] == [n for n in names if n in full]
    assert sorted(services) == sorted(full) and len(services) == len(full)


def test_aws_data_path_models_load_and_unknown_services_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model under AWS_DATA_PATH is found and loaded (a copy of S3's under another
    name); a service that exists nowhere is UnknownServiceError listing the known."""
    copied = tmp_path / "data" / "s3-copy" / "2006-03-01"
    copied.mkdir(parents=True)
    for model in (_DATA / "s3" / "2006-03-01").iterdir():
        shutil.copy(model, copied / model.name)
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path / "data"))
    made = session(None, "us-east-1")
    loader = made.get_component("data_loader")
    assert "s3-copy" in loader.list_available_services("service-2")
    model = loader.load_service_model("s3-copy", "service-2")
    assert model["metadata"]["serviceId"] == "S3"
    with pytest.raises(botocore.exceptions.UnknownServiceError) as raised:
        loader.load_service_model("no-such-service", "service-2")
    assert "s3-copy" in str(raised.value) and "sqs" in str(raised.value)


_COUNT_LISTDIRS = """
import sys
from modelsync.backends._aws import session
calls = []
sys.addaudithook(lambda event, args: calls.append(event) if event == "os.listdir" else None)
made = session(None, "us-east-1") if sys.argv[1] == "quick" else __import__(
    "botocore.session").session.Session()
if sys.argv[1] != "quick":
    made.set_config_variable("region", "us-east-1")
made.create_client("s3", endpoint_url="http://127.0.0.1:9", aws_access_key_id="a",
                   aws_secret_access_key="b")
print(len(calls))
"""


def test_a_first_s3_client_lists_no_service_directories() -> None:
    """Counted by Python's audit hook in a fresh process: botocore's own loader lists
    every service's directory (953 listdirs here), the quick one its versions (43)."""
    counts = {}
    env = {k: v for k, v in os.environ.items() if k != "AWS_DATA_PATH"}
    for kind in ("quick", "plain"):
        done = subprocess.run(
            [sys.executable, "-c", _COUNT_LISTDIRS, kind], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr
        counts[kind] = int(done.stdout.split()[-1])
    assert counts["plain"] > 400, counts
    assert counts["quick"] < 100, counts
