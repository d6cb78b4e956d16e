"""Plots of benchmarks/results.json: ``python -m benchmarks.plot [results.json]`` -> docs/images/perf-*.png."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def plot(results: dict, outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    if "relay" in results:
        rows = results["relay"]["rows"]
        labels = [f"{r['clients']}x{r['chat_size']}" for r in rows]
        x = range(len(rows))
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
        pyca = results.get("by_backend", {}).get("cryptography", {}).get("relay", {}).get("rows")
        if pyca and len(pyca) == len(rows):
            a.bar([i - 0.27 for i in x], [r["securechat"]["deliveries_per_s"] for r in rows], 0.27,
                  label="securechat (pycryptodome)")
            a.bar(list(x), [r["securechat"]["deliveries_per_s"] for r in pyca], 0.27, label="securechat (cryptography)")
            a.bar([i + 0.27 for i in x], [r["plaintext"]["deliveries_per_s"] for r in rows], 0.27, label="plaintext relay")
        else:
            a.bar([i - 0.2 for i in x], [r["securechat"]["deliveries_per_s"] for r in rows], 0.4, label="securechat")
            a.bar([i + 0.2 for i in x], [r["plaintext"]["deliveries_per_s"] for r in rows], 0.4,
                  label="plaintext relay")
        a.axhline(15000, color="red", ls="--", lw=1, label="target 15k (50x5)")
        a.set_xticks(list(x), labels)
        a.set_xlabel("clients x chat size")
        a.set_ylabel("deliveries/s")
        a.set_title("Relay capacity (flood)")
        a.legend(fontsize=8)
        b.bar([i - 0.2 for i in x], [r["securechat"]["p50_ms"] for r in rows], 0.4, label="p50")
        b.bar([i + 0.2 for i in x], [r["securechat"]["p99_ms"] for r in rows], 0.4, label="p99")
        b.set_xticks(list(x), labels)
        b.set_ylabel("ms")
        b.set_title("securechat latency under flood")
        b.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, outdir / "perf-relay.png"))
    if "chat_setup" in results:
        rows = results["chat_setup"]["rows"]
        n = [r["members"] for r in rows]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(n, [r["setup_arrived_ms"] for r in rows], "o-", label="setup: keys at every member")
        ax.plot(n, [r["setup_installed_ms"] for r in rows], "o:", label="setup: installed (1 generator, serial)")
        ax.plot(n, [r["rekey_arrived_ms"] for r in rows], "s-", label="invite rekey: keys at every member")
        ax.axhline(50, color="red", ls="--", lw=1, label="target 50 ms at 100")
        ax.set_xlabel("members")
        ax.set_ylabel("ms")
        ax.set_title("Chat setup and rekey")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, outdir / "perf-setup.png"))
    if "signature_schemes" in results:
        rows = results["signature_schemes"]["rows"]
        names = [r["scheme"] for r in rows]
        x = range(len(rows))
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar([i - 0.2 for i in x], [r["sender_us"] for r in rows], 0.4, label="sender (encrypt + sign)")
        ax.bar([i + 0.2 for i in x], [r["receiver_us"] for r in rows], 0.4, label="receiver (verify + decrypt)")
        ax.set_xticks(list(x), names, fontsize=8)
        ax.set_ylabel("µs per message")
        ax.set_title("Per-message client cost by signature scheme")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, outdir / "perf-schemes.png"))
    if "class_session" in results:
        c = results["class_session"]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(range(len(c["rss_samples_mb"])), c["rss_samples_mb"], "-")
        ax.axhline(300, color="red", ls="--", lw=1, label="target 300 MB")
        ax.set_xlabel("sample (about 1 s apart)")
        ax.set_ylabel("server RSS (MB)")
        ax.set_title(f"Class session: {c['clients']} clients, {c['offered_messages_per_s']:.0f} msg/s — "
                     f"p99 {c['p99_ms']} ms, lost {c['lost']}", fontsize=9)
        ax.set_ylim(0, max(320, max(c["rss_samples_mb"]) * 1.1))
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, outdir / "perf-class.png"))
    return written


def _save(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results.json"
    for p in plot(json.loads(src.read_text()), ROOT / "docs" / "images"):
        print(p)
