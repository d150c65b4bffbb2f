"""GPU prices: read from RunPod's API (the fake's, over HTTP), cached with their date, and the dated fallback."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hpo.backends.runpod import RunPodApi
from hpo.cost import FALLBACK_AS_OF, FALLBACK_PRICES, GpuRate, PriceBook, load_price_book, price_cache_file
from hpo.errors import ApiError
from hpo.fake_runpod import GPU_TYPES, FakeRunPod

KEY = "rpa_prices_test_key"
A5000 = "NVIDIA RTX A5000"


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeRunPod]:
    root = tmp_path_factory.mktemp("prices")
    with FakeRunPod(api_keys={KEY}, workdir=root / "fake", pod_command=["sleep", "60"]) as server:
        yield server


@pytest.fixture
def api(fake: FakeRunPod) -> Iterator[RunPodApi]:
    client = RunPodApi(KEY, rest_url=fake.url, graphql_base=fake.url, sleep=lambda _: None)
    yield client
    client.close()


def _dead_api() -> RunPodApi:
    """A client for an address nobody listens on: every call fails at once, with no retries to wait out."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    return RunPodApi(KEY, rest_url=url, graphql_base=url, timeout=2, attempts=1, sleep=lambda _: None)


class CountingSource:
    """A price source that counts how often it is asked."""

    def __init__(self, api: RunPodApi) -> None:
        self.api = api
        self.calls = 0

    def on_demand_prices(self) -> dict[str, float]:
        self.calls += 1
        return self.api.on_demand_prices()

    def spot_prices(self) -> dict[str, float]:
        self.calls += 1
        return self.api.spot_prices()


def test_on_demand_prices_come_from_the_catalog_and_spot_prices_from_graphql(api: RunPodApi) -> None:
    on_demand = api.on_demand_prices()
    spot = api.spot_prices()
    secure = {g.id: g for g in GPU_TYPES.values() if g.secure is not None}
    assert on_demand == {gpu_id: gpu.secure for gpu_id, gpu in secure.items()}
    assert spot == {g.id: g.secure_spot for g in GPU_TYPES.values() if g.secure_spot is not None}
    assert "NVIDIA RTX 4000 SFF Ada Generation" not in on_demand  # Community Cloud only


def test_a_price_book_from_the_api_is_cached_with_its_date(api: RunPodApi, tmp_path: Path) -> None:
    source = CountingSource(api)
    cache = price_cache_file(tmp_path, api.rest_url)
    clock = [1_800_000_000.0]
    book = load_price_book(source, cache_file=cache, now=lambda: clock[0])
    assert book.source == "api" and book.note is None
    assert book.hourly(A5000, spot=False) == pytest.approx(0.27)
    assert book.hourly(A5000, spot=True, gpu_count=2) == pytest.approx(0.28)
    assert book.as_of == datetime.fromtimestamp(clock[0], UTC).isoformat(timespec="seconds")
    assert source.calls == 2 and json.loads(cache.read_text())["fetched_at"] == clock[0]

    clock[0] += 3600  # an hour later: the cache answers
    again = load_price_book(source, cache_file=cache, now=lambda: clock[0])
    assert source.calls == 2 and again.source == "cache" and again.rates == book.rates and again.as_of == book.as_of

    clock[0] += 24 * 3600  # a day later: asked again
    load_price_book(source, cache_file=cache, now=lambda: clock[0])
    assert source.calls == 4


def test_an_unreachable_api_falls_back_to_the_dated_table_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = _dead_api()
    with caplog.at_level(logging.WARNING):
        book = load_price_book(dead, cache_file=price_cache_file(tmp_path, dead.rest_url))
    assert book.source == "fallback" and book.as_of == FALLBACK_AS_OF == "2026-02"
    assert book.note and "cannot read the GPU catalog" in book.note and "shipped table of 2026-02" in book.note
    assert "shipped table" in caplog.text
    assert book.hourly(A5000, spot=True) == pytest.approx(0.14)  # the user's Feb 2026 figure
    assert book.hourly("NVIDIA H100 80GB HBM3", spot=False) == pytest.approx(2.69)
    assert book.hourly("no such GPU", spot=False) is None
    assert "shipped" in book.describe() and "2026-02" in book.describe()
    assert not price_cache_file(tmp_path, dead.rest_url).exists()  # a fallback is never cached as RunPod's word


def test_an_unreachable_api_uses_an_old_cache_before_the_table(api: RunPodApi, tmp_path: Path) -> None:
    dead = _dead_api()
    cache = price_cache_file(tmp_path, dead.rest_url)
    old = datetime(2026, 3, 1, tzinfo=UTC)
    stored = PriceBook({A5000: GpuRate(0.31, 0.17)}, "api", old.isoformat(timespec="seconds"))
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({"fetched_at": (old - timedelta(days=1)).timestamp(), "book": stored.to_json()}))
    book = load_price_book(dead, cache_file=cache)
    assert book.source == "stale cache" and book.hourly(A5000, spot=True) == pytest.approx(0.17)
    assert book.note and "cached on 2026-03-01" in book.note


def test_half_an_answer_takes_the_other_half_from_the_table() -> None:
    class SpotGone:
        def on_demand_prices(self) -> dict[str, float]:
            return {A5000: 0.3}

        def spot_prices(self) -> dict[str, float]:
            raise ApiError("GraphQL gpuTypes: cannot reach RunPod")

    book = load_price_book(SpotGone(), cache_file=None)
    assert book.hourly(A5000, spot=False) == pytest.approx(0.3)
    assert book.hourly(A5000, spot=True) == pytest.approx(FALLBACK_PRICES[A5000].spot)
    assert book.note and "spot prices" in book.note


def test_the_shipped_table_is_the_users_feb_2026_secure_cloud_figures() -> None:
    assert FALLBACK_PRICES["NVIDIA RTX A5000"] == GpuRate(0.27, 0.14)
    assert FALLBACK_PRICES["NVIDIA A100-SXM4-80GB"] == GpuRate(1.49, 0.79)
    assert len(FALLBACK_PRICES) == 9
    # The fake sells the same figures, so rehearsals price pods like the table does.
    for gpu_id, rate in FALLBACK_PRICES.items():
        assert (GPU_TYPES[gpu_id].secure, GPU_TYPES[gpu_id].secure_spot) == (rate.on_demand, rate.spot)
