"""Results in object storage, end to end, against a real S3 API server on loopback (moto in
server mode, started and stopped here; credentials and endpoint for this process only): a
demo sweep written to s3:// whose driver is killed resumes from the URI with nothing lost or
repeated (the resume test of the sweep), loads back field for field equal to the same sweep
on a local disk, and renders; bad storage is one line before Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import ray
from demo_sweep import FAST

from raycompress import report, storage
from raycompress.results import load
from raycompress.sweep import main

BUCKET = "rc-results"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """s3://BUCKET/runs on a moto server of this process; the AWS_* settings point at it."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server._server.server_address[1]
    settings = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }  # fmt: skip
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield f"s3://{BUCKET}/runs"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame without the trial ids (drawn afresh by each sweep), in a fixed order."""
    keys = ["model", "epoch", "split", "layer", "metric", "budget"]
    return frame.drop(columns="trial_id").sort_values(keys).reset_index(drop=True)


@pytest.mark.slow
def test_a_sweep_in_object_storage_resumes_loads_and_renders(
    s3: str, demo: tuple[int, Path], tmp_path: Path
) -> None:
    status, local = demo
    assert status == 0
    argv = ["demo", "--storage-path", s3, *FAST]
    experiment = storage.folder(f"{s3}/demo")
    # Its own session, so that SIGKILL reaches the driver and the Ray processes it started.
    driver = subprocess.Popen(
        [sys.executable, "-m", "raycompress.sweep", *argv], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not experiment.exists() or not experiment.glob("*/checkpoint_000000"):
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(1)
        time.sleep(3)  # let Tune upload its experiment state
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    assert main([*argv, "--resume"]) == 0  # from the URI, nothing copied by hand
    ours = load(f"{s3}/demo")
    counts = ours[ours.metric == "loss"].groupby(["trial_id", "epoch"]).size()
    assert counts.index.get_level_values("epoch").tolist() == [1, 2] * 2  # no gap
    assert (counts == 2).all()  # no duplicate: each epoch once per split
    # and every value as the same sweep gave on a local disk, uninterrupted
    pd.testing.assert_frame_equal(comparable(ours), comparable(load(local / "demo")))
    out = tmp_path / "report"
    assert report.main([f"{s3}/demo", "--out", str(out)]) == 0
    page = (out / "index.html").read_text()
    # every figure drawn but the budget curves (the shortened demo scores one decoder budget)
    assert page.count("not drawn") == 1 and "<b>budget_curves</b>: not drawn" in page
    assert f"{s3}/demo" in page


def test_bad_storage_is_one_line_before_ray_starts(
    s3: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(uri: str) -> str:
        assert main(["demo", "--storage-path", uri, *FAST]) == 2
        assert not ray.is_initialized()
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ")
        return err

    assert "the bucket 'no-such-bucket' does not exist" in refused("s3://no-such-bucket/runs")
    from moto import settings

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server checks keys
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in refused(s3)
    monkeypatch.undo()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    assert "check AWS_ENDPOINT_URL" in refused(s3)
    assert report.main([f"{s3}/demo", "--out", os.devnull]) == 2
