"""Prometheus text as the real servers write it (captured from Triton, MLServer and KServe
in the real-server suite's environments) read into one model's totals and figures."""

from __future__ import annotations

import pytest

from modelsync.cancel import CancelToken
from modelsync.metricsread import MetricsUnavailable, Totals, figures, parse_totals, scrape
from modelsync.servers import get_preset
from modelsync.servers.kserve import SERIES as KSERVE
from modelsync.servers.mlserver import SERIES as MLSERVER
from modelsync.servers.triton import SERIES as TRITON
from tests.httpstub import http_stub

TRITON_TEXT = """# TYPE nv_inference_request_success counter
nv_inference_request_success{model="add",version="2"} 90
nv_inference_request_success{model="other",version="1"} 7
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="add",reason="BACKEND",version="2"} 10
nv_inference_request_failure{model="add",reason="REJECTED",version="2"} 0
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="add",version="2"} 2000000
"""

MLSERVER_TEXT = """# TYPE model_infer_request_duration summary
model_infer_request_duration_count{model="iris",version="1"} 4.0
model_infer_request_duration_sum{model="iris",version="1"} 0.04
model_infer_request_duration_count{model="iris",version="None"} 1.0
model_infer_request_duration_sum{model="iris",version="None"} 0.01
# TYPE model_infer_request_failure_total counter
model_infer_request_failure_total{model="iris",version="1"} 1.0
model_infer_request_failure_total{model="iris",version="None"} 0.0
# TYPE model_infer_request_success_total counter
model_infer_request_success_total{model="iris",version="1"} 3.0
model_infer_request_success_total{model="iris",version="None"} 1.0
"""

KSERVE_TEXT = """# TYPE request_predict_seconds histogram
request_predict_seconds_bucket{le="0.005",model_name="add"} 50.0
request_predict_seconds_bucket{le="0.01",model_name="add"} 90.0
request_predict_seconds_bucket{le="0.025",model_name="add"} 100.0
request_predict_seconds_bucket{le="+Inf",model_name="add"} 100.0
request_predict_seconds_count{model_name="add"} 100.0
request_predict_seconds_sum{model_name="add"} 0.6
"""


def test_triton_counters_give_error_ratio_and_mean_latency() -> None:
    """Triton: failures summed over reasons, microseconds scaled, other models ignored,
    no p50/p99 (no histogram)."""
    got = figures(None, parse_totals(TRITON_TEXT, TRITON, "add", 0), TRITON)
    assert got.requests == 100 and got.error_ratio == pytest.approx(0.1)
    assert got.latency_mean_s == pytest.approx(0.02)
    assert got.latency_p50_s is None and got.latency_p99_s is None and got.window_s is None


def test_mlserver_sums_every_version_label() -> None:
    """MLServer: the unversioned route's "None" series counts with the versioned one."""
    got = figures(None, parse_totals(MLSERVER_TEXT, MLSERVER, "iris", 0), MLSERVER)
    assert got.requests == 5 and got.error_ratio == pytest.approx(0.2)
    assert got.latency_mean_s == pytest.approx(0.01)


def test_kserve_histogram_gives_quantiles_and_no_error_ratio() -> None:
    """KServe: p50/p99 interpolated in the buckets as histogram_quantile does; no
    failure counter, so no error ratio."""
    got = figures(None, parse_totals(KSERVE_TEXT, KSERVE, "add", 0), KSERVE)
    assert got.requests == 100 and got.error_ratio is None
    assert got.latency_p50_s == pytest.approx(0.005)
    assert got.latency_p99_s == pytest.approx(0.01 + 0.015 * 0.9)
    assert got.latency_mean_s == pytest.approx(0.006)


def test_window_is_the_difference_and_a_reset_counts_whole() -> None:
    """Two scrapes: the window's figures are the differences; a counter that went down
    (server restarted) counts its new value; a series that vanished counts nothing."""
    start = Totals(100.0, parse_totals(TRITON_TEXT, TRITON, "add", 100.0).values)
    later = TRITON_TEXT.replace("} 90", "} 180").replace(
        'BACKEND",version="2"} 10', 'BACKEND",version="2"} 30'
    )
    got = figures(start, parse_totals(later, TRITON, "add", 400.0), TRITON)
    assert got.requests == 110 and got.error_ratio == pytest.approx(20 / 110)
    assert got.window_s == 300.0
    reset = TRITON_TEXT.replace("} 90", "} 5").replace(
        'BACKEND",version="2"} 10', 'BACKEND",version="2"} 0'
    )
    after_restart = figures(start, parse_totals(reset, TRITON, "add", 500.0), TRITON)
    assert after_restart.requests == 5 and after_restart.error_ratio == 0.0


def test_malformed_lines_are_skipped_not_fatal() -> None:
    """Garbage, NaN, negative values and odd label values do not hide the good lines."""
    text = (
        "garbage line\n"
        'nv_inference_request_success{model="add",version="2"} NaN\n'
        'nv_inference_request_success{model="add",version="3"} -4\n'
        'nv_inference_request_success{model="add",version="2",x="a,b}=\\"c"} 7\n'
        'nv_inference_request_failure{model="add" 3\n'
        'nv_inference_request_failure{model="add",version="2"} 1 1712000000000\n'
    )
    got = figures(None, parse_totals(text, TRITON, "add", 0), TRITON)
    assert got.requests == 8 and got.error_ratio == pytest.approx(1 / 8)


def test_journal_round_trip_and_hostile_journal() -> None:
    """Totals survive the journal's JSON; a hand-edited one loses only its bad entries."""
    totals = parse_totals(TRITON_TEXT, TRITON, "add", 5.0)
    back = Totals.from_doc(totals.to_doc())
    assert back == totals
    assert Totals.from_doc({"at": 1, "values": {"x": -1, "y": "z", "w": 2}}) == Totals(
        1.0, {"w": 2.0}
    )
    assert Totals.from_doc([1, 2]) is None
    assert figures(None, Totals(0, {"not json": 3.0}), TRITON).requests == 0


def test_scrape_over_http_and_its_failures() -> None:
    """A scrape reads the endpoint; an error status or nothing listening is
    MetricsUnavailable naming the URL."""
    with http_stub(lambda m, p, b: (200, TRITON_TEXT.encode())) as (url, _):
        got = scrape(url + "/metrics", TRITON, "add", 1.0, 2, CancelToken())
    assert figures(None, got, TRITON).requests == 100
    with http_stub(lambda m, p, b: (503, b"no")) as (url, _):
        with pytest.raises(MetricsUnavailable, match="HTTP 503"):
            scrape(url + "/metrics", TRITON, "add", 1.0, 2, CancelToken())
        dead = url
    with pytest.raises(MetricsUnavailable, match=dead.split("//")[1]):
        scrape(dead + "/metrics", TRITON, "add", 1.0, 2, CancelToken())


@pytest.mark.parametrize(
    ("server", "url", "expected"),
    [
        ("triton", "http://10.0.0.5:8000", "http://10.0.0.5:8002/metrics"),
        ("mlserver", "http://u:p@[::1]:9000", "http://[::1]:8082/metrics"),
        ("kserve", "http://127.0.0.1:8080", "http://127.0.0.1:8080/metrics"),
    ],
)
def test_preset_metrics_urls(server: str, url: str, expected: str) -> None:
    """Each preset's metrics URL derives from server_url (its own metrics port)."""

    class Model:
        name, server_url, confirm_timeout = "m", url, 1.0
        server_options: dict[str, object] = {}

    endpoint = get_preset(server).metrics(Model())
    assert endpoint is not None and endpoint.url == expected
    assert get_preset("tfserving").metrics(Model()) is None
