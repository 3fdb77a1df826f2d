"""The HTML report opens in headless Chromium with every image rendered and no console error.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages
separated by NUL bytes on file descriptors 3 and 4), with the standard library only. The test is
skipped only where Debian's ``chromium`` is not installed; ``.ci/run`` installs it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from modalbag import ConfigError

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _as_fds_3_and_4(read_end: int, write_end: int) -> None:
    """In the child: put the pipe ends on descriptors 3 and 4, inheritable, whatever numbers they had
    (copied above 10 first, so that neither is overwritten or left close-on-exec by a no-op dup2)."""
    high_read, high_write = fcntl.fcntl(read_end, fcntl.F_DUPFD, 10), fcntl.fcntl(write_end, fcntl.F_DUPFD, 10)
    os.dup2(high_read, 3)
    os.dup2(high_write, 4)


class DevTools:
    """A minimal DevTools client over Chromium's debugging pipe."""

    def __init__(self, binary: str, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
             "--no-default-browser-check", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False,  # the pipe ends moved to 3 and 4 below must survive until exec
            preexec_fn=lambda: _as_fds_3_and_4(to_chrome_r, from_chrome_w))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id, self._buffer, self.events = 0, b"", []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_chrome, 65536)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def open_in_chromium(path: Path, profile: Path) -> tuple[list[dict], list[dict]]:
    """Load ``path``; return each image's rendering facts and every console / log / exception event."""
    assert CHROMIUM is not None
    tools = DevTools(CHROMIUM, profile)
    try:
        target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            tools.call(f"{domain}.enable", session=session)
        tools.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        tools.wait_for("Page.loadEventFired")
        result = tools.call("Runtime.evaluate", {
            "expression": "JSON.stringify(Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, "
                          "width: i.naturalWidth, height: i.naturalHeight})))", "returnByValue": True},
            session=session)
        images = json.loads(result["result"]["value"])
        problems = [e for e in tools.events if e.get("method") in ("Runtime.exceptionThrown", "Log.entryAdded")
                    and (e["method"] == "Runtime.exceptionThrown" or e["params"]["entry"]["level"] == "error")]
        problems += [e for e in tools.events if e.get("method") == "Runtime.consoleAPICalled"
                     and e["params"]["type"] in ("error", "assert")]
        return images, problems
    finally:
        tools.close()


@pytest.fixture(scope="module")
def report(trained_model, held_out, tmp_path_factory):
    path = tmp_path_factory.mktemp("html") / "report.html"
    data, labels = held_out
    return trained_model.write_html_report(path, data, labels)


def test_report_is_one_self_contained_file(report, trained_model):
    text = report.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    sources = re.findall(r'src="([^"]+)"', text)
    assert len(sources) == 4  # robustness, learner comparison, curves, modality importance
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(href|src)="(https?:|//|file:)', text)  # nothing to fetch
    for lid in trained_model.learners:
        assert lid in text
    assert trained_model.run_id in text


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed here (.ci/run installs it)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    images, problems = open_in_chromium(report, tmp_path / "profile")
    assert len(images) == 4
    for img in images:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
    assert problems == []


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed here (.ci/run installs it)")
def test_the_browser_check_sees_a_broken_image_and_a_console_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                    '<img alt="bad" src="data:image/png;base64,AAAA"><script>console.error("boom")</script>'
                    "</body></html>", encoding="utf-8")
    images, problems = open_in_chromium(page, tmp_path / "profile")
    assert images[0]["width"] == 0
    assert any("boom" in json.dumps(p) for p in problems)


def test_report_path_defaults_to_the_run_dir(trained_model):
    if trained_model.training_config.run_dir is None:
        with pytest.raises(ConfigError, match="needs a path"):
            trained_model.write_html_report()


def test_save_training_plots_writes_pngs(trained_model, tmp_path):
    paths = trained_model.save_training_plots(tmp_path / "plots")
    assert set(paths) == {"training_curves", "learner_comparison", "modality_importance"}
    for path in paths.values():
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_without_matplotlib_the_report_keeps_its_numbers_and_says_how_to_get_plots(trained_model, tmp_path,
                                                                                    monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what a core install without the plots extra has
    path = trained_model.write_html_report(tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert "data:image/png" not in text
    assert "pip install &#x27;modalbag[plots]&#x27;" in text or "pip install 'modalbag[plots]'" in text
    assert "Learners" in text and "bag_000" in text


def test_the_report_answers_first_with_the_ensembles_held_out_score_and_its_missing_modality_curve(
        report, trained_model, held_out):
    data, labels = held_out
    text = report.read_text(encoding="utf-8")
    headings = re.findall(r"<h2>([^<]+)</h2>", text)
    assert headings[0] == "Ensemble" and headings[-1] == "Run"
    measured = trained_model.evaluate(data, labels)["accuracy"]
    shown = re.search(r"Ensemble accuracy <strong>([0-9.]+)</strong> on (\d+) held-out data", text)
    assert shown and float(shown.group(1)) == pytest.approx(measured, abs=5e-4) and int(shown.group(2)) == len(labels)
    # the curve: a score per share missing, the first (nothing missing) equal to the headline
    first_share = re.search(r"<tr><td>0%</td><td>([0-9.]+)</td></tr>", text)
    assert first_share and float(first_share.group(1)) == pytest.approx(measured, abs=5e-4)
    for share in ("25%", "50%", "75%", "90%"):
        assert f"<td>{share}</td>" in text
    only_one = min(trained_model.dataset.specs)
    alone = trained_model.evaluate({m: (v if m == only_one else np.full_like(v, np.nan)) for m, v in data.items()},
                                   labels)["accuracy"]
    row = re.search(rf"<tr><td>{only_one}</td><td>([0-9.]+)</td>", text)
    assert row and float(row.group(1)) == pytest.approx(alone, abs=5e-4)
    # the run: its configuration, versions, date and machine, with labels a reader understands
    import modalbag

    for shown_text in ("Configuration", "random_state", modalbag.__version__, "report written", "cores",
                       "training time, learners summed (s)"):
        assert shown_text in text, shown_text
    assert "best_validation_score" not in text and "total_time" not in text


def test_a_run_stopped_while_its_loss_still_falls_is_not_called_converged(tmp_path):
    from tests.conftest import make_model

    model = make_model(n_samples=200)
    model.create_ensemble(n_bags=1, random_state=0)
    model.select_base_learners(trainers=["neural"], instantiate=False)
    model.train_ensemble(epochs=3, warmup_epochs=0, learning_rate=1e-3, validation_split=0.2, random_state=0)
    losses = [r.monitored() for r in model.learners["bag_000"].records]
    assert losses[-1] < losses[-2]  # the premise: it was still learning
    issues = model.get_training_diagnostics()["loss_issues"]
    assert [i["type"] for i in issues] == ["still_improving"]
    text = model.write_html_report(tmp_path / "report.html").read_text(encoding="utf-8")
    assert "still_improving" in text and "No issue found" not in text
