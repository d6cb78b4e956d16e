"""Markdown tables from benchmarks/results.json (pasted into docs/PERFORMANCE.md): ``python -m benchmarks.report``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tables(r: dict) -> str:
    out = []
    mach = r["machine"]
    out.append(f"Machine: {mach['nproc']} cores, {mach['cpu']}; Python {mach['python']}, pycryptodome "
               f"{mach['pycryptodome']}; {mach['platform']}. Run started {r['started']}, took {r['elapsed_s']} s.\n")
    rel = r["relay"]
    out.append("| clients x chat | securechat deliveries/s | p50 ms | p99 ms | lost | server CPU (cores) | "
               "generator CPU | plaintext deliveries/s | p50 ms | p99 ms | lost | ratio |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rel["rows"]:
        s, p = row["securechat"], row["plaintext"]
        out.append(f"| {row['clients']}x{row['chat_size']} | {s['deliveries_per_s']:,.0f} | {s['p50_ms']} | "
                   f"{s['p99_ms']} | {s['lost']} | {s['server_cpu_s_per_s']} | {s.get('generator_cpu_s_per_s', '-')} | {p['deliveries_per_s']:,.0f} | "
                   f"{p['p50_ms']} | {p['p99_ms']} | {p['lost']} | {row['ratio']} |")
    e = rel["end_to_end_50x5"]
    out.append(f"\nEnd to end, full client work (ClientProtocol.send_chat / receive_data: Ed25519 sign and verify, "
               f"AES-GCM, records), 50x5 flood: **{e['deliveries_per_s']:,.0f} deliveries/s**, p50 {e['p50_ms']} ms, "
               f"p99 {e['p99_ms']} ms, lost {e['lost']}, server CPU {e['server_cpu_s_per_s']} cores, generator CPU "
               f"{e.get('generator_cpu_s_per_s', '-')} cores.\n")
    c = r["class_session"]
    out.append("| clients | chat size | offered msg/s | duration s | deliveries/s | p50 ms | p99 ms | max ms | lost | "
               "RSS idle / after logins / peak MB | server CPU |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    out.append(f"| {c['clients']} | {c['chat_size']} | {c['offered_messages_per_s']:.0f} | {c['duration_s']:.0f} | "
               f"{c['deliveries_per_s']:,.0f} | {c['p50_ms']} | {c['p99_ms']} | {c['max_ms']} | {c['lost']} | "
               f"{c['rss_idle_mb']} / {c['rss_after_logins_mb']} / {c['rss_peak_mb']} | {c['server_cpu_s_per_s']} |\n")
    b = r["login_burst"]
    bb, before, during = b["burst"], b["chat_before"], b["chat_during"]
    out.append("| logins | scrypt | logged in | failed | connect+handshake s | burst s (login sent -> last answer) | "
               "median login s | chat p50/p99 before (ms) | chat p50/p99 during (ms) | lost |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    out.append(f"| {bb.get('clients')} | {b['scrypt']} | {bb.get('logged_in')} | {bb.get('failed')} | "
               f"{bb.get('connect_handshake_s')} | {bb.get('burst_s')} | {bb.get('median_login_s')} | "
               f"{before['p50_ms']} / {before['p99_ms']} | {during['p50_ms']} / {during['p99_ms']} | "
               f"{during['lost']} |\n")
    if "server_rss_peak_mb" in during:
        out.append(f"Server RSS peak during the burst: {during['server_rss_peak_mb']} MB.\n")
    out.append("| members | setup: key at every member (ms) | setup: all installed (ms) | invite rekey: key at every "
               "member (ms) | invite rekey: all installed (ms) |")
    out.append("|---|---|---|---|---|")
    for row in r["chat_setup"]["rows"]:
        out.append(f"| {row['members']} | {row['setup_arrived_ms']} | {row['setup_installed_ms']} | "
                   f"{row['rekey_arrived_ms']} | {row['rekey_installed_ms']} |")
    out.append("\n| scheme | sender µs (encrypt + sign) | receiver µs (verify + decrypt) | record seal+open µs | "
               "signature bytes |")
    out.append("|---|---|---|---|---|")
    for row in r["signature_schemes"]["rows"]:
        out.append(f"| {row['scheme']} | {row['sender_us']:.0f} | {row['receiver_us']:.0f} | "
                   f"{row['record_seal_plus_open_us']:.0f} | {row['signature_bytes']} |")
    if "targets" in r:
        out.append("\n| target | required | measured | met |")
        out.append("|---|---|---|---|")
        for name, t in r["targets"].items():
            out.append(f"| {name} | {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    for name, other in r.get("by_backend", {}).items():
        out.append(f"\n#### With the {name} AEAD backend (`--aead-backend both`, same run)\n")
        if "relay" in other:
            out.append("| clients x chat | securechat deliveries/s | p50 ms | p99 ms | lost | server CPU | generator CPU | "
                       "plaintext deliveries/s | ratio |")
            out.append("|---|---|---|---|---|---|---|---|---|")
            for row in other["relay"]["rows"]:
                s, p = row["securechat"], row["plaintext"]
                out.append(f"| {row['clients']}x{row['chat_size']} | {s['deliveries_per_s']:,.0f} | {s['p50_ms']} | "
                           f"{s['p99_ms']} | {s['lost']} | {s['server_cpu_s_per_s']} | "
                           f"{s.get('generator_cpu_s_per_s', '-')} | {p['deliveries_per_s']:,.0f} | {row['ratio']} |")
            e = other["relay"]["end_to_end_50x5"]
            out.append(f"\nEnd to end 50x5 ({name}): {e['deliveries_per_s']:,.0f} deliveries/s, p50 {e['p50_ms']} ms, "
                       f"p99 {e['p99_ms']} ms, lost {e['lost']}, server CPU {e['server_cpu_s_per_s']}, generator CPU "
                       f"{e.get('generator_cpu_s_per_s', '-')}.\n")
        if "class_session" in other:
            c = other["class_session"]
            out.append(f"Class session ({name}): {c['clients']} clients, {c['offered_messages_per_s']:.0f} msg/s for "
                       f"{c['duration_s']:.0f} s: p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms, max {c['max_ms']} ms, "
                       f"lost {c['lost']}, RSS peak {c['rss_peak_mb']} MB, server CPU {c['server_cpu_s_per_s']}.\n")
        if "signature_schemes" in other:
            rec = ", ".join(f"{row['scheme']} {row['record_seal_plus_open_us']:.0f}"
                            for row in other["signature_schemes"]["rows"])
            out.append(f"Record seal+open µs ({name}): {rec}.\n")
        if other.get("targets"):
            out.append("| target | required | measured | met |")
            out.append("|---|---|---|---|")
            for tname, t in other["targets"].items():
                out.append(f"| {tname} | {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(out)


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "benchmarks" / "results.json"
    print(tables(json.loads(src.read_text())))
