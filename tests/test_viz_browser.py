"""Every HTML page safecircuits writes renders in a real browser: headless Chromium opens each page
(generated here from small hand-built inputs and the tiny organism), waits for plotly, and fails on
an uncaught JavaScript error, a console error, a plot without drawn data, a title or axis label
cut off at the figure's edge, or a colour bar or legend lying over a plot area.

Chromium is Debian's ``chromium`` package, driven through the Chrome DevTools protocol over a
pipe (``--remote-debugging-pipe``: file descriptors 3 and 4), so nothing but the standard library
is needed and nothing is downloaded. Skipped only when no Chromium binary is installed.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from safecircuits.circuits.circuit import Circuit
from safecircuits.viz import circuit_report_html
from safecircuits.viz.finetune import write_benchmark_html
from safecircuits.viz.index import write_index
from safecircuits.viz.subspaces import write_geometry_html

pytestmark = pytest.mark.slow

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
    "--remote-debugging-pipe", "--window-size=1280,900",
)
VIEWPORT = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}


def chromium_binary() -> str | None:
    """``$SAFECIRCUITS_CHROMIUM`` (which must then exist) or the first Chromium/Chrome on PATH."""
    env = os.environ.get("SAFECIRCUITS_CHROMIUM")
    if env:
        if not shutil.which(env):
            pytest.fail(f"SAFECIRCUITS_CHROMIUM={env!r} is not an executable")
        return env
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _above(fd: int, low: int) -> int:
    """A duplicate of ``fd`` numbered ``low`` or higher (the original is closed)."""
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)
    os.close(fd)
    return new


class CDPError(RuntimeError):
    """The browser answered a DevTools command with an error, or did not answer in time."""


class Chromium:
    """A headless Chromium and a minimal Chrome DevTools protocol client over
    ``--remote-debugging-pipe``: JSON messages separated by NUL bytes, commands to fd 3, answers
    and events from fd 4. Use as a context manager."""

    def __init__(self, binary: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="sc-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # a small Python launcher puts the child's pipe ends on fds 3 and 4 and execs the browser
        # (moved above 9 first, so that neither dup2 overwrites the other end)
        to_chrome_r, from_chrome_w = (_above(fd, 10) for fd in (to_chrome_r, from_chrome_w))
        launcher = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
                    "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", launcher, str(to_chrome_r), str(from_chrome_w), binary, *FLAGS,
             f"--user-data-dir={self.profile}", "about:blank"],
            pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr: list[bytes] = []
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr or []), daemon=True).start()

    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._from_chrome, "rb", buffering=0) as f:
            while chunk := f.read(1 << 16):
                buf += chunk
                *msgs, buf = buf.split(b"\0")
                for m in msgs:
                    self._inbox.put(json.loads(m))
        self._inbox.put(None)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one command and wait for its answer (events that arrive meanwhile go to ``events``)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise CDPError(f"chromium is gone (code {self.proc.poll()}): {self.stderr()}") from None
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._next(deadline, method)
            if m.get("id") == self._next_id:
                if "error" in m:
                    raise CDPError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, session: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for an event (``method`` in ``session``); earlier ones already received count."""
        for e in self.events:
            if e.get("method") == method and e.get("sessionId") == session:
                return e
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._next(deadline, method)
            self.events.append(m)
            if m.get("method") == method and m.get("sessionId") == session:
                return m

    def _next(self, deadline: float, what: str) -> dict[str, Any]:
        try:
            m = self._inbox.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise CDPError(f"no answer to {what} in time") from None
        if m is None:
            raise CDPError(f"chromium exited (code {self.proc.poll()}): {self.stderr()}")
        return m

    def stderr(self) -> str:
        """The end of what the browser wrote to stderr."""
        return b"".join(self._stderr).decode(errors="replace")[-2000:]

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.send("Browser.close", timeout=10)
                self.proc.wait(timeout=10)
        except (CDPError, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._to_chrome)
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Runs in the page: waits until every plotly div has rendered, then measures what was drawn.
CHECK_JS = r"""
(async () => {
  const divs = () => Array.from(document.querySelectorAll('.plotly-graph-div'));
  const deadline = Date.now() + 20000;
  const ready = () => !divs().length || (window.Plotly && divs().every(d => d._fullLayout && d.querySelector('.main-svg')));
  while (Date.now() < deadline && !ready()) {
    await new Promise(r => setTimeout(r, 100));
  }
  await new Promise(r => setTimeout(r, 500));  // heatmap images and text measurement settle
  const rect = el => { const b = el.getBoundingClientRect(); return {x0: b.left, y0: b.top, x1: b.right, y1: b.bottom}; };
  const overlap = (a, b) => Math.max(0, Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0)) * Math.max(0, Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0));
  const n = v => (v == null ? 0 : (v.length !== undefined ? v.length : (v.bdata ? 1 : 0)));
  const plots = divs().map(gd => {
    const out = {id: gd.id, rendered: !!gd._fullLayout, problems: []};
    if (!gd._fullLayout) return out;
    out.title = (gd._fullLayout.title && gd._fullLayout.title.text) || '';
    out.traces = (gd.data || []).map(t => ({type: t.type || 'scatter', name: t.name || '',
      points: Math.max(n(t.x), n(t.y), n(t.z)) }));
    const drawn = {
      scatter: gd.querySelectorAll('.scatterlayer .point').length
               + Array.from(gd.querySelectorAll('.scatterlayer .js-line')).filter(p => (p.getAttribute('d') || '').length > 3).length,
      bar: gd.querySelectorAll('.barlayer .point').length,
      histogram: gd.querySelectorAll('.barlayer .point').length,
      heatmap: Array.from(gd.querySelectorAll('.heatmaplayer image')).filter(i => (i.getAttribute('href') || '').length > 100).length,
    };
    out.drawn = drawn;
    const types = new Set(out.traces.filter(t => t.points > 0).map(t => t.type));
    if (!types.size) out.problems.push('no trace with data points');
    for (const t of types) if (!(drawn[t] > 0)) out.problems.push(`nothing drawn for the ${t} traces`);
    const svg = rect(gd.querySelector('.main-svg'));
    const texts = gd.querySelectorAll('text.gtitle, text[class$="title"], .annotation text.annotation-text');
    for (const el of texts) {
      if (!el.textContent.trim()) continue;
      const r = rect(el);
      if (r.x0 < svg.x0 - 2 || r.x1 > svg.x1 + 2 || r.y0 < svg.y0 - 2 || r.y1 > svg.y1 + 2) {
        out.problems.push(`text cut off at the figure edge: "${el.textContent.slice(0, 60)}"`);
      }
    }
    for (const layer of gd.querySelectorAll('.xaxislayer-above, .yaxislayer-above')) {
      const ticks = Array.from(layer.querySelectorAll('text')).filter(t => t.textContent.trim()).map(t => [t.textContent, rect(t)]);
      const clash = ticks.find(([, a], i) => ticks.slice(0, i).some(([, b]) => overlap(a, b) > 2));
      if (clash) out.problems.push(`tick labels overlap each other (at "${clash[0].slice(0, 30)}")`);
    }
    const areas = Array.from(gd.querySelectorAll('.draglayer .nsewdrag')).map(rect);
    for (const el of gd.querySelectorAll('.colorbar')) {
      const r = rect(el);
      if (areas.some(a => overlap(r, a) > 4)) out.problems.push('a colour bar lies over a plot area');
    }
    const legend = gd.querySelector('.legend .bg');
    if (legend && areas.some(a => overlap(rect(legend), a) > 4)) out.problems.push('the legend lies over a plot area');
    out.legend = Array.from(gd.querySelectorAll('.legend .traces .legendtext')).map(t => t.textContent);
    // centres of the markers of every single-point scatter trace, per subplot
    out.single_points = Array.from(gd.querySelectorAll('.scatterlayer .trace')).map(tr => {
      const pts = tr.querySelectorAll('.point');
      if (pts.length !== 1) return null;
      const b = pts[0].getBoundingClientRect();
      return [Math.round((b.left + b.right) / 2), Math.round((b.top + b.bottom) / 2), Math.round(b.width)];
    }).filter(p => p);
    return out;
  });
  const links = Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'));
  return {plots, links, plotly: !!window.Plotly};
})()
"""


def inspect_page(browser: Chromium, path: Path) -> dict[str, Any]:
    """Open ``path`` in a fresh tab, run :data:`CHECK_JS`, and return its result plus ``errors``:
    uncaught exceptions, console errors and browser log errors of that tab."""
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    try:
        for m in ("Page.enable", "Runtime.enable", "Log.enable"):
            browser.send(m, session=session)
        browser.send("Emulation.setDeviceMetricsOverride", VIEWPORT, session=session)
        start = len(browser.events)
        nav = browser.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        assert "errorText" not in nav, nav
        browser.wait_event("Page.loadEventFired", session)
        res = browser.send("Runtime.evaluate", {"expression": CHECK_JS, "awaitPromise": True, "returnByValue": True},
                           session=session, timeout=60)
        if "exceptionDetails" in res:
            raise AssertionError(f"the check script failed in {path.name}: {res['exceptionDetails']}")
        out = res["result"]["value"]
        errors = []
        for e in browser.events[start:]:
            if e.get("sessionId") != session:
                continue
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                errors.append(f"uncaught: {d.get('exception', {}).get('description') or d.get('text')}")
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
        out["errors"] = errors
        return out
    finally:
        browser.send("Target.closeTarget", {"targetId": target})


# -- the pages ---------------------------------------------------------------------------------
def _circuit(shape: tuple[int, int, int], seed: int, objective: str, head_share: float, neuron_share: float) -> Circuit:
    g = torch.Generator().manual_seed(seed)
    n_layers, n_heads, d_mlp = shape
    hs, ns = torch.rand(n_layers, n_heads, generator=g), torch.rand(n_layers, d_mlp, generator=g)
    history = [{"step": 25 * (i + 1), "train/total": 2.0 / (i + 1), "train/sparsity": 0.5 - 0.05 * i, "val/behaviour": 1.0 / (i + 2),
                "circuit_size": 9 - i // 2} for i in range(8)]
    prov = {"model": f"fake {n_layers}x{n_heads}x{d_mlp}", "objective": objective, "mask": "hard_concrete", "ablation": "zero",
            "seed": seed, "steps": 200, "history": history}
    return Circuit(hs > 1 - head_share, ns > 1 - neuron_share, hs, ns, prov)


def _curve(c: Circuit, backdoor: bool) -> dict[str, Any]:
    fr = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    sizes = [round(f * c.n_components) for f in fr]
    out = {"sizes": sizes, "fractions": fr, "mode": "remove", "label": c.provenance["objective"],
           "circuit": {"objective": c.provenance["objective"]}, "utility": [0.95, 0.95, 0.9, 0.9, 0.85, 0.7, 0.5], "auc_utility": 0.84}
    if backdoor:
        out |= {"asr": [0.0] * 7, "auc_asr": 0.0, "triggered_asr": [1.0, 0.9, 0.6, 0.3, 0.05, 0.0, 0.0], "auc_triggered_asr": 0.31}
    else:
        out |= {"asr": [0.02, 0.1, 0.3, 0.6, 0.9, 0.95, 0.97], "auc_asr": 0.67}
    return out


def _bench_results() -> dict[str, Any]:
    runs = {}
    values = {"sft": (0.9, 1.0), "sct-freeze": (0.9, 1.0), "sct-tune": (0.4, 0.95), "cwac": (0.1, 0.9)}  # sft == sct-freeze
    for m, (h, a) in values.items():
        for p in (0.0, 0.1):
            runs[f"{m}|p={p:g}|seed=0"] = {"method": m, "ratio": p, "seed": 0, "harmful_score": h * (p > 0), "accuracy": a,
                                           "harmless_kl": 0.1, "harmless_refusal": 0.0, "trainable_share": 1.0, "wall_seconds": 2.0,
                                           "step_seconds": 0.1}
    return {"settings": {"model": "organism:aligned?size=tiny", "task": "reverse-steps", "steps": 40, "lr": 1e-4}, "runs": runs}


def _feature_dashboard(out: Path) -> Path:
    from safecircuits.features import rank_features, train_sae
    from safecircuits.models import load_model
    from safecircuits.viz.features import feature_dashboard_html

    lm = load_model("organism:aligned?size=tiny", progress=False)
    hook = f"blocks.{lm.model.cfg.n_layers - 1}.hook_resid_post"
    sae = train_sae(lm, None, hook, arch="topk", d_sae=64, k=8, training_tokens=4096, batch_size=128, progress=False).sae
    prompts = lm.profile.sae_prompts("val")
    fset = rank_features(lm, sae, prompts, method="diff")
    return feature_dashboard_html(lm, sae, fset, prompts, out / "feature_dashboard.html", k=3, n_examples=3, max_prompts_per_label=24)


def write_pages(out: Path) -> dict[str, int]:
    """Write every kind of page into ``out`` (as the demo names them, plus a real-model-sized
    circuit map) and the index; return {file name: the least number of plots it must hold}."""
    from safecircuits.subspaces import geometry_report

    shape = (4, 4, 256)
    backdoor, safety = _circuit(shape, 0, "backdoor", 0.2, 0.02), _circuit(shape, 1, "safety", 0.3, 0.05)
    circuit_report_html(out / "circuit_map.html", {"backdoor": backdoor, "safety": safety},
                        faithfulness={"backdoor": _curve(backdoor, True), "safety": _curve(safety, False)})
    big = _circuit((30, 9, 1536), 2, "safety", 0.1, 0.02)
    circuit_report_html(out / "circuit_map_30x9x1536.html", {"safety (30 x 9 heads, 30 x 1536 neurons)": big})
    write_benchmark_html(_bench_results(), out / "finetune_bench.html")
    g = torch.Generator().manual_seed(0)
    spaces = {"refusal direction": torch.randn(64, generator=g), "activation PCA (k=4)": torch.randn(64, 4, generator=g),
              "weight delta W_O/W_out outputs, layer 1": torch.randn(64, 6, generator=g),
              "top SAE safety features (decoder)": torch.randn(64, 10, generator=g)}
    write_geometry_html(geometry_report(spaces), out / "subspace_geometry.html", title="safety subspaces of a fake model")
    _feature_dashboard(out)
    pages = [("circuit_map.html", "Circuit maps", "two small circuits"),
             ("circuit_map_30x9x1536.html", "Circuit map, real-model size", "30 x 9 heads, 30 x 1536 neurons"),
             ("feature_dashboard.html", "SAE safety features", "the tiny organism"),
             ("subspace_geometry.html", "Safety subspace geometry", "random subspaces"),
             ("finetune_bench.html", "Harmful fine-tuning", "two methods with identical scores")]
    write_index(out, pages, title="browser check")
    return {"circuit_map.html": 2 * 4 + 1, "circuit_map_30x9x1536.html": 3, "feature_dashboard.html": 4,
            "subspace_geometry.html": 1, "finetune_bench.html": 1, "index.html": 0}


@pytest.fixture(scope="module")
def browser():
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary: install it with `apt-get update && apt-get install -y chromium` "
                    "(or point SAFECIRCUITS_CHROMIUM at a Chrome/Chromium executable)")
    with Chromium(binary) as b:
        yield b


def test_pages_render_in_chromium(browser: Chromium, tmp_path: Path) -> None:
    expected = write_pages(tmp_path)
    assert (tmp_path / "circuit_map_30x9x1536.html").stat().st_size < 8_000_000  # plotly.js (~4.7 MB) + a few hundred kB
    problems: list[str] = []
    results = {}
    for name, min_plots in expected.items():
        res = inspect_page(browser, tmp_path / name)
        results[name] = res
        problems += [f"{name}: {e}" for e in res["errors"]]
        if min_plots and not res["plotly"]:
            problems.append(f"{name}: plotly.js did not load")
        if len(res["plots"]) < min_plots:
            problems.append(f"{name}: {len(res['plots'])} plots, expected at least {min_plots}")
        for p in res["plots"]:
            if not p["rendered"]:
                problems.append(f"{name}: plot {p['id']} did not render")
            problems += [f"{name}: plot {p['id']} ({p.get('title', '')[:50]!r}): {x}" for x in p["problems"]]
    assert not problems, "\n".join(problems)

    # the index links every page, and only existing files
    links = results["index.html"]["links"]
    assert sorted(links) == sorted(n for n in expected if n != "index.html")
    # fine-tuning: every method in the legend and drawn where it can be seen (sft and sct-freeze coincide)
    (fig,) = results["finetune_bench.html"]["plots"]
    assert set(fig["legend"]) == {"sft", "sct-freeze", "sct-tune", "cwac"}
    pts = fig["single_points"]
    assert len(pts) == 8
    for i, a in enumerate(pts):
        for b in pts[:i]:
            assert abs(a[0] - b[0]) + abs(a[1] - b[1]) >= 6, f"two methods drawn on top of each other: {a} {b}"
