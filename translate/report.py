"""`runs/NAME/report.html`: loss curves, samples over time, the monitor's findings with remedies and the evaluation
table, in one self-contained page (inline CSS, images referenced relative to the run folder) that opens offline."""
from __future__ import annotations

import html
import json
import time
from pathlib import Path

from .checkpoint import atomic_write
from .losses import WASSERSTEIN
from .monitor import BALANCE, SIGNATURES
from .pace import duration

MAX_SAMPLES = 8  # sample grids shown, evenly spaced over the run (first and last included)
CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.muted{color:#666} .ok{background:#e6f4ea;border-left:5px solid #2e7d32}
.bad{background:#fdecea;border-left:5px solid #c62828}
.status{padding:.7em 1em;margin:1em 0} .finding{padding:.6em 1em;margin:.8em 0}
.finding h3{margin:.1em 0} code{background:#f3f3f3;padding:0 .25em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left} img{max-width:100%}
figure{display:inline-block;margin:.4em;vertical-align:top} figcaption{text-align:center;color:#555}
td.best{font-weight:bold;background:#e6f4ea} table.facts th{text-align:left;background:#f7f7f7}
table.facts td{text-align:left}
table.sessions td{text-align:left;vertical-align:top} pre{font-size:12px;max-height:20em;overflow:auto}
.samples img{image-rendering:pixelated}
"""


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written while we read
            continue
    return rows


def plot_losses(metrics: list[dict], findings: list[dict], adversarial: str, path: Path) -> "Figure":
    """Four panels: adversarial losses (with chance levels), content losses (cycle, identity, feature matching,
    PatchNCE), D's mean outputs (the critic's estimate for Wasserstein losses), learning rates; dotted lines where
    findings were raised.
    Legends sit beside the panels; a loss that is zero throughout (unused by the recipe) is not drawn."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    steps = [m["step"] for m in metrics]
    fig = Figure(figsize=(12, 6.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)

    def curves(ax, keys, title):
        for key in keys:
            values = [m.get(key, float("nan")) for m in metrics]
            if any(v == v and v != 0 for v in values):  # absent or always zero: a loss this run does not use
                ax.plot(steps, values, label=key)
        ax.set_title(title)
        ax.grid(alpha=0.3)

    curves(axes[0, 0], ("g_adv", "d_a", "d_b"), "adversarial losses")
    if adversarial in BALANCE:
        d_eq, g_eq = BALANCE[adversarial]
        axes[0, 0].axhline(d_eq, color="grey", ls="--", lw=0.8, label="D at chance")
        axes[0, 0].axhline(2 * g_eq, color="grey", ls=":", lw=0.8, label="G (both) at chance")
    curves(axes[0, 1], ("g_cycle", "g_identity", "g_fm", "g_nce"), "content losses")
    if adversarial in WASSERSTEIN:
        axes[1, 0].plot(steps, [m["d_real"] - m["d_fake"] for m in metrics], label="critic estimate")
        axes[1, 0].set_title("Wasserstein estimate (falls as the generator improves)")
        axes[1, 0].grid(alpha=0.3)
    else:
        curves(axes[1, 0], ("d_real", "d_fake"), "mean D output on real / fake")
    curves(axes[1, 1], ("lr_g", "lr_d"), "learning rates")
    axes[1, 1].ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
    for ax in axes.flat:
        for f in findings:
            ax.axvline(f["since_step"], color="#c62828", ls=":", lw=1)
        if ax.lines:  # beside the panel, never over the curves
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    for f in findings:
        axes[0, 0].annotate(f["name"], (f["since_step"], 1), xycoords=("data", "axes fraction"), rotation=90,
                            va="top", ha="right", fontsize=8, color="#c62828",
                            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    for ax in axes[1]:
        ax.set_xlabel("step")
    fig.savefig(path, dpi=90)
    return fig


def _caption(path: Path) -> str:
    """'step_0000500.png' -> 'step 500'."""
    prefix, _, number = path.stem.rpartition("_")
    return f"{prefix} {int(number)}" if number.isdigit() else path.stem


def _findings_html(findings: list[dict], active: set[str] | None) -> str:
    if not findings:
        return '<div class="status ok">No finding: none of the known failure signatures appeared.</div>'
    parts = []
    for f in findings:
        state = "" if active is None else (" (active)" if f["name"] in active else " (cleared since)")
        remedies = "".join(f"<li><code>{html.escape(r)}</code></li>" for r in f["remedies"])
        parts.append(f'<div class="finding bad"><h3>{html.escape(f["name"])}{state}, since step {f["since_step"]}'
                     f'</h3><div class="muted">{html.escape(SIGNATURES.get(f["name"], ""))}</div>'
                     f'<p>{html.escape(f["evidence"])}</p>Try:<ul>{remedies}</ul></div>')
    return "".join(parts)


def _best(values: list, better: str) -> set[int]:
    """Indexes of the best of `values` (None = missing) for a row marked ↑, ↓ or ≈1."""
    scored = [(v if better == "↑" else -v if better == "↓" else -abs(v - 1), i) for i, v in enumerate(values)
              if v is not None]
    top = max(scored)[0] if len(scored) > 1 else None
    return {i for score, i in scored if score == top}


def _eval_html(results: dict) -> str:
    """The evaluation table; in each row the best value of each direction (over the runs and the do-nothing
    baseline) is bold on green."""
    from .evaluate import ROWS, _fmt
    directions, runs = results["directions"], results["runs"]
    head = "".join(f"<th>{html.escape(run['name'])}<br>{d}</th>" for run in runs for d in directions)
    body = ""
    for key, label, better in ROWS:
        values = {d: [run["results"][d].get(key) for run in runs] for d in directions}
        if not any(v is not None for vs in values.values() for v in vs):
            continue
        best = {d: _best(values[d], better) for d in directions}
        cells = "".join(f'<td{" class=best" if i in best[d] else ""}>{_fmt(values[d][i])}</td>'
                        for i in range(len(runs)) for d in directions)
        body += f"<tr><td>{html.escape(label)} {better}</td>{cells}</tr>"
    notes = "".join(f"<p class='muted'>{html.escape(n)}</p>" for n in results.get("notes", []))
    return (f"<table><tr><th>metric</th>{head}</tr>{body}</table><p class='muted'>Bold: the best value of the row "
            f"in each direction (↑ higher is better, ↓ lower, ≈1 closest to 1).</p>{notes}")


def _sessions_wall_time(sessions: list[dict], metrics: list[dict]) -> float | None:
    """Seconds spent training: per session (start or resume), its last logged time minus its start."""
    if not sessions or not any("time" in m for m in metrics):
        return None
    starts = [s["time"] for s in sessions] + [float("inf")]
    total = 0.0
    for start, next_start in zip(starts, starts[1:]):
        times = [m["time"] for m in metrics if start <= m.get("time", -1) < next_start]
        total += max(times) - start if times else 0.0
    return total


def _run_html(run: Path, sessions: list[dict], metrics: list[dict], train: dict) -> str:
    """Progress, wall time, speed and the data: what a person asks first about a run."""
    rows = []
    if metrics:
        planned = (sessions[-1].get("total_steps") if sessions else None) or train.get("max_steps")  # --minutes
        rows.append(("steps", f"{metrics[-1]['step']:,}" + (f" of {planned:,}" if planned else "")))
    wall = _sessions_wall_time(sessions, metrics)
    if wall is not None:
        rows.append(("wall time", f"{duration(wall)} over {len(sessions)} session(s) (start and resumes)"))
    if metrics and "images_per_s" in metrics[-1]:
        rows.append(("speed", f"{metrics[-1]['images_per_s']:.3g} images/s, {metrics[-1]['step_time_s']:.3g} s a "
                              "step at the last log" if "step_time_s" in metrics[-1] else
                              f"{metrics[-1]['images_per_s']:.3g} images/s at the last log"))
    data = sessions[-1].get("data", {}) if sessions else {}
    for d in "ab":
        if f"train_{d}" in data:
            name = data.get("names", ["A", "B"])["ab".index(d)]
            label = f"domain {d.upper()}" + (f" ({name})" if name != d.upper() else "")
            rows.append((label, f"{data[f'train_{d}']:,} training images from {data.get(f'source_{d}', '?')}"))
    if "samples" in data:
        rows.append(("sample images", data["samples"]))
    skipped = run / "skipped.txt"
    if skipped.is_file():
        n = len(skipped.read_text().splitlines())
        rows.append(("skipped files", f'{n} unreadable, listed in <a href="skipped.txt">skipped.txt</a>'))
    elif data:
        rows.append(("skipped files", "none"))
    if not rows:
        return ""
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{v if k == 'skipped files' else html.escape(v)}</td></tr>"
                    for k, v in rows)  # the skipped-files cell holds a link
    return f"<table class=facts>{cells}</table>"


def _flat(config: dict) -> dict:
    return {k: v for section in config.values() if isinstance(section, dict) for k, v in section.items()}


def _sessions_html(sessions: list[dict]) -> str:
    """One row per start or resume: when, from which step, and the settings that changed (full config folded)."""
    rows, previous = "", None
    for s in sessions:
        flat = _flat(s.get("config", {}))
        if previous is None:
            change = "new run"
        else:
            diff = [f"--{k.replace('_', '-')} {previous.get(k)} → {v}" for k, v in flat.items()
                    if previous.get(k) != v]
            change = "resumed; " + ("; ".join(diff) if diff else "same settings")
        full = html.escape(json.dumps(s.get("config", {}), indent=1))
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(s["time"])) if "time" in s else "?"
        rows += (f"<tr><td>{when}</td><td>{s.get('step', 0):,}</td><td>{html.escape(change)}<details><summary>"
                 f"full config</summary><pre>{full}</pre></details></td></tr>")
        previous = flat
    return f"<table class=sessions><tr><th>started</th><th>at step</th><th>settings</th></tr>{rows}</table>"


def write_report(run_dir: str | Path) -> Path:
    """Build run_dir/report.html (and losses.png) from what the run folder holds now."""
    run = Path(run_dir)
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    train = config.get("train", {})
    metrics = _read_jsonl(run / "metrics.jsonl")
    findings = _read_jsonl(run / "findings.jsonl")
    sessions = _read_jsonl(run / "sessions.jsonl")
    active = set(metrics[-1]["findings"]) if metrics and "findings" in metrics[-1] else None

    if findings:
        status = ", ".join(sorted(active)) if active else "none now"
        summary = (f'<div class="status bad">{len(findings)} finding(s) raised; active: {html.escape(status)}.'
                   " Details and remedies below.</div>")
    else:
        summary = _findings_html([], active)
    curves = ""
    if metrics:
        plot_losses(metrics, findings, train.get("adversarial", "lsgan"), run / "losses.png")
        last = metrics[-1]
        curves = (f'<img src="losses.png" alt="loss curves"><p class="muted">Last log: step {last["step"]}'
                  + (f', {last["images_per_s"]:.3g} images/s' if "images_per_s" in last else "") + ".</p>")
    samples = sorted((run / "samples").glob("*.png"))
    if len(samples) > MAX_SAMPLES:
        samples = [samples[round(i * (len(samples) - 1) / (MAX_SAMPLES - 1))] for i in range(MAX_SAMPLES)]
    grids = "".join(f'<figure class=samples><img src="samples/{html.escape(p.name)}" alt="{html.escape(p.stem)}" '
                    'width="420">'
                    f'<figcaption>{html.escape(_caption(p))}</figcaption></figure>' for p in samples)
    evaluation = ""
    if (run / "eval.json").is_file():
        evaluation = "<h2>Evaluation</h2>" + _eval_html(json.loads((run / "eval.json").read_text()))
    settings = ", ".join(f"{k} {train[k]}" for k in ("recipe", "adversarial", "lr_g", "lr_d", "d_steps", "g_steps",
                                                      "batch_size", "max_steps") if k in train)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(run.name)}: training report</title>
<style>{CSS}</style></head><body>
<h1>{html.escape(run.name)}</h1><div class="muted">{html.escape(settings)}</div>
{_run_html(run, sessions, metrics, train)}
<h2>Health</h2>{summary}{_findings_html(findings, active) if findings else ""}
<h2>Losses</h2>{curves or '<p class="muted">No metrics logged yet.</p>'}
<p class="muted">GAN losses do not converge like supervised ones; judge the run by the findings above, the
samples below and the evaluation, not by a falling curve.</p>
<h2>Samples over time</h2><p class="muted">Each row: real A, fake B, reconstructed A | real B, fake A,
reconstructed B.</p>{grids or '<p class="muted">No samples yet.</p>'}
{evaluation}
{"<h2>Sessions</h2>" + _sessions_html(sessions) if sessions else ""}
</body></html>
"""
    atomic_write(run / "report.html", page.encode())
    return run / "report.html"
