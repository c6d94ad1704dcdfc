#!/usr/bin/env python3
"""Helper of conformance/bench/compare (Python 3 standard library only).

  compare.py run --row R --client C --records N --out FILE.json --log FILE [--timeout S] -- CMD...
      Run CMD as a child, copy its output to FILE and to stderr, and measure from outside its
      user and system CPU seconds (getrusage RUSAGE_CHILDREN: the child and every descendant
      it waited for, e.g. the JVM under the kafka script) and its wall time. Parse the
      kafka-producer-perf-test final line it prints, or for a consumer either the
      `N records consumed, X records/sec (Y MB/sec) in S s` line of sansa, rdkafka-perf and
      franz-perf or kafka-consumer-perf-test's CSV line. Write one JSON result.
  compare.py stored --out FILE.json --topic T --payload-bytes N -- CMD...
      Run CMD, a `sansa request ... DescribeLogDirs` whose JSON answer gives the size of each
      partition the broker stores, and add to FILE the bytes stored for topic T: what the
      client's batches took on the broker's disk, compression and batch overhead included,
      against N bytes of record payload.
  compare.py skip --row R --client C --out FILE.json --status TEXT
      Write a result without a run ("not available", "build failed", ...).
  compare.py report --results DIR --meta FILE.json --md FILE --svg FILE
      Print the table of every result in DIR (in run order; a client's rounds of one row, from
      `compare --rounds`, as the median of each figure, with the range of records/s and CPU
      in the note) and write it as Markdown and as a grouped bar chart (hand-written SVG).
  compare.py update-benchmarks --md FILE --benchmarks BENCHMARKS.md [--marker NAME]
      Replace the text between the NAME markers (default "results": <!-- results:begin -->
      and <!-- results:end -->) of BENCHMARKS.md with FILE.
"""

import argparse
import glob
import html
import json
import math
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import time

FINAL_LINE = re.compile(
    r"(?P<count>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99.9th\."
)
CONSUMED_LINE = re.compile(
    r"(?P<count>\d+) records consumed, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\) in (?P<s>[\d.]+) s"
)
# kafka-consumer-perf-test's data line: start.time, end.time, data.consumed.in.MB, MB.sec,
# data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec.
# The fetch.* figures leave out the group join, which the other clients do not make.
JAVA_CONSUMER_LINE = re.compile(
    r"^[\d-]+ [\d:]+, [\d-]+ [\d:]+, [\d.]+, [\d.]+, (?P<count>\d+), [\d.]+, (?P<join_ms>\d+), "
    r"(?P<fetch_ms>\d+), (?P<mbps>[\d.]+), (?P<rps>[\d.]+)$"
)
CPU_LINE = re.compile(r"cpu: (?P<user>[\d.]+) s user, (?P<sys>[\d.]+) s system")


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def cmd_run(a):
    result = {"row": a.row, "client": a.client, "records": a.records, "seq": time.time()}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    final, consumed, self_cpu, timed_out = None, None, None, False
    # Own session, so the whole tree can be killed on a time-out; output line by line.
    proc = subprocess.Popen(a.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True, errors="replace")

    def kill_tree():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def on_alarm(*_):
        nonlocal timed_out
        timed_out = True
        kill_tree()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(a.timeout)))
    try:
        with open(a.log, "w") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                sys.stderr.write("    " + line)
                m = FINAL_LINE.search(line)
                if m:
                    final = m
                m = CONSUMED_LINE.search(line) or JAVA_CONSUMER_LINE.search(line.strip())
                if m:
                    consumed = m
                m = CPU_LINE.search(line)
                if m:
                    self_cpu = float(m["user"]) + float(m["sys"])
        rc = proc.wait()
    except BaseException:
        kill_tree()
        proc.wait()
        raise
    finally:
        signal.alarm(0)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    result.update(exit_code=rc, wall_s=round(wall, 3), cpu_user_s=round(user, 3),
                  cpu_sys_s=round(system, 3), cpu_s=round(user + system, 3),
                  cpu_s_per_million=round((user + system) * 1e6 / a.records, 3),
                  max_rss_mb=round(after.ru_maxrss / 1024, 1), self_reported_cpu_s=self_cpu)
    if final:
        result.update(sent=int(final["count"]), records_per_s=float(final["rps"]),
                      mb_per_s=float(final["mbps"]), avg_ms=float(final["avg"]),
                      max_ms=float(final["max"]), p50_ms=int(final["p50"]),
                      p95_ms=int(final["p95"]), p99_ms=int(final["p99"]),
                      p999_ms=int(final["p999"]))
    if consumed:
        result.update(kind="consume", consumed=int(consumed["count"]), records_per_s=float(consumed["rps"]),
                      mb_per_s=float(consumed["mbps"]))
        if "join_ms" in consumed.groupdict():
            result.update(join_ms=int(consumed["join_ms"]), fetch_ms=int(consumed["fetch_ms"]))
    if timed_out:
        result["status"] = f"timed out after {a.timeout:.0f} s"
    elif consumed:
        # kafka-consumer-perf-test counts every record of its last poll, so it may pass N.
        if result["consumed"] < a.records:
            result["status"] = f"failed ({result['consumed']} of {a.records} consumed, exit {rc})"
        elif rc != 0:
            result["status"] = f"failed (exit {rc})"
        else:
            result["status"] = "ok"
    elif not final:
        result["status"] = f"failed (exit {rc}, no final line)"
    elif result["sent"] != a.records:
        result["status"] = f"failed ({result['sent']} of {a.records} sent, exit {rc})"
    elif rc != 0:
        result["status"] = f"failed (exit {rc})"
    else:
        result["status"] = "ok"
    write_json(a.out, result)
    return 0 if result["status"] == "ok" else 1


def cmd_stored(a):
    try:
        answer = json.loads(subprocess.run(a.command, check=True, capture_output=True, text=True).stdout)["body"]
        stored = sum(p["partition_size"] for d in answer["results"] for t in d["topics"]
                     if t["name"] == a.topic for p in t["partitions"])
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError, TypeError) as e:
        print(f"stored bytes of {a.topic} unknown: {e}", file=sys.stderr)
        return 1
    result = json.load(open(a.out))
    result.update(stored_bytes=stored, stored_ratio=round(stored / a.payload_bytes, 3) if a.payload_bytes else None)
    write_json(a.out, result)
    return 0


def cmd_skip(a):
    write_json(a.out, {"row": a.row, "client": a.client, "status": a.status, "seq": time.time()})
    return 0


# ---- report -------------------------------------------------------------------------------

def load(results_dir):
    """Rows and clients in run order, and each client's result per row: its one run, or the
    medians of its rounds (`compare --rounds`)."""
    rows, clients, runs = [], [], {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json")),
                       key=lambda p: json.load(open(p))["seq"]):
        r = json.load(open(path))
        if r["row"] not in rows:
            rows.append(r["row"])
        if r["client"] not in clients:
            clients.append(r["client"])
        runs.setdefault((r["row"], r["client"]), []).append(r)
    return rows, clients, {k: combine(v) for k, v in runs.items()}


# Figures a result made of several rounds reports as the median of the rounds.
MEDIAN_FIELDS = ("records_per_s", "mb_per_s", "cpu_s_per_million", "cpu_s", "p50_ms", "p95_ms", "p99_ms",
                 "p999_ms", "avg_ms", "max_ms", "stored_ratio", "stored_bytes")


def combine(runs):
    """One result from a client's rounds of one row: the medians of each figure, and the
    range of records/s and CPU; failed if any round failed."""
    if len(runs) == 1:
        return runs[0]
    failed = [r for r in runs if not ok(r)]
    if failed:
        out = dict(failed[0])
        out["status"] = f"{failed[0]['status']} ({len(failed)} of {len(runs)} rounds)"
        return out
    out = dict(runs[0])
    for k in MEDIAN_FIELDS:
        values = [r[k] for r in runs if r.get(k) is not None]
        if values:
            m = statistics.median(values)
            out[k] = round(m) if all(isinstance(v, int) for v in values) else m
    out["rounds"] = len(runs)
    out["range"] = {k: [min(r[k] for r in runs), max(r[k] for r in runs)]
                    for k in ("records_per_s", "cpu_s_per_million")}
    return out


def ok(r):
    return r is not None and r.get("status") == "ok"


def ratios(row, clients, by):
    """sansa's records/s over the best peer's, and sansa's CPU over the lowest peer CPU."""
    s = by.get((row, "sansa"))
    peers = [by.get((row, c)) for c in clients if c != "sansa"]
    peers = [p for p in peers if ok(p)]
    if not ok(s) or not peers:
        return None
    best = max(peers, key=lambda p: p["records_per_s"])
    frugal = min(peers, key=lambda p: p["cpu_s_per_million"])
    return {"rps": s["records_per_s"] / best["records_per_s"], "rps_peer": best["client"],
            "cpu": s["cpu_s_per_million"] / frugal["cpu_s_per_million"] if frugal["cpu_s_per_million"] else math.inf,
            "cpu_peer": frugal["client"]}


def cells(r, consume=False):
    """records/s, MB/s, p99 ms and stored/payload (producers only), CPU s per 1M records, note."""
    n = 4 if consume else 6
    if r is None:
        return ["-"] * (n - 1) + ["not run"]
    if not ok(r):
        return ["-"] * (n - 1) + [r["status"]]
    stored = f"{r['stored_ratio']:.2f}" if r.get("stored_ratio") is not None else "?"
    producer = [] if consume else [f"{r['p99_ms']}", stored]
    note = ""
    if r.get("rounds"):
        (lo, hi), (clo, chi) = r["range"]["records_per_s"], r["range"]["cpu_s_per_million"]
        note = f"median of {r['rounds']}: {lo:,.0f}-{hi:,.0f} records/s, {clo:.2f}-{chi:.2f} CPU s"
    return [f"{r['records_per_s']:,.0f}", f"{r['mb_per_s']:.1f}"] + producer + [f"{r['cpu_s_per_million']:.2f}", note]


def is_consume(meta):
    return meta.get("kind") == "consume"


def ratio_text(q):
    if not q:
        return ""
    return f"sansa/best peer: {q['rps']:.2f}x records/s (vs {q['rps_peer']}), " \
           f"{q['cpu']:.2f}x CPU (vs {q['cpu_peer']})"


def text_table(rows, clients, by, meta):
    consume = is_consume(meta)
    head = ["row", "client", "records/s", "MB/s"] + ([] if consume else ["p99 ms", "stored"]) + ["CPU s/1M rec", "note"]
    lines = []
    for row in rows:
        for i, c in enumerate(clients):
            lines.append([row if i == 0 else "", c] + cells(by.get((row, c)), consume))
        q = ratio_text(ratios(row, clients, by))
        if q:
            lines.append(["", q])
    widths = [max(len(head[i]), *(len(l[i]) for l in lines if len(l) > i and len(l) == len(head)))
              for i in range(len(head))]
    right = set(range(2, len(head) - 1))

    def fmt(l):
        if len(l) != len(head):  # a ratio line spans the table
            return " " * (widths[0] + 2) + l[1]
        return "  ".join(v.rjust(widths[i]) if i in right else v.ljust(widths[i])
                         for i, v in enumerate(l)).rstrip()

    out = [fmt(head), fmt(["-" * w for w in widths])] + [fmt(l) for l in lines]
    return "\n".join(out)


def md_table(rows, clients, by, meta):
    out = [f"Run {meta.get('date', '?')} on {meta.get('machine', '?')}; "
           f"{meta.get('records_note', '')}", ""]
    out.append("Clients: " + "; ".join(f"**{c}** = {meta.get('labels', {}).get(c, c)}" for c in clients))
    out.append("")
    consume = is_consume(meta)
    if consume:
        out.append("| row | client | records/s | MB/s | CPU s per 1M records | note |")
        out.append("|---|---|--:|--:|--:|---|")
    else:
        out.append("| row | client | records/s | MB/s | p99 ms | stored / payload | CPU s per 1M records | note |")
        out.append("|---|---|--:|--:|--:|--:|--:|---|")
    for row in rows:
        for c in clients:
            v = cells(by.get((row, c)), consume)
            out.append(f"| {row} | {c} | " + " | ".join(v) + " |")
    out += ["", "sansa against the best peer of each row (records/s: above 1 is faster; "
            "CPU: below 1 uses less CPU than the most frugal peer):", "",
            "| row | records/s ratio | best peer | CPU ratio | lowest-CPU peer |", "|---|--:|---|--:|---|"]
    for row in rows:
        q = ratios(row, clients, by)
        if q:
            out.append(f"| {row} | {q['rps']:.2f} | {q['rps_peer']} | {q['cpu']:.2f} | {q['cpu_peer']} |")
        else:
            out.append(f"| {row} | - | - | - | - |")
    return "\n".join(out) + "\n"


COLORS = ["#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"]


def nice_max(v):
    if v <= 0:
        return 1
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def svg_chart(rows, clients, by, meta):
    bar, gap, left, top, plot_h, bottom = 16, 22, 70, 66, 280, 100
    group = bar * len(clients) + gap
    width = max(left + group * len(rows) + 20, 560)  # room for the title and legend
    height = top + plot_h + bottom
    vmax = nice_max(max([by[k]["records_per_s"] for k in by if ok(by[k])] or [1]))
    y = lambda v: top + plot_h - plot_h * v / vmax
    e = html.escape
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{left}" y="18" font-size="14" font-weight="bold">'
         f'{"Consumer" if is_consume(meta) else "Producer"} throughput, records/s (higher is better)</text>',
         f'<text x="{left}" y="34" fill="#555">{e(meta.get("date", ""))}; {e(meta.get("records_note", ""))}</text>']
    for i in range(6):  # grid and y labels
        v = vmax * i / 5
        s.append(f'<line x1="{left}" x2="{width - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        s.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    for gi, row in enumerate(rows):
        x0 = left + gap / 2 + gi * group
        for ci, c in enumerate(clients):
            r = by.get((row, c))
            x = x0 + ci * bar
            if ok(r):
                v = r["records_per_s"]
                p99 = f'p99 {r["p99_ms"]} ms, ' if "p99_ms" in r else ""
                s.append(f'<rect x="{x:.1f}" y="{y(v):.1f}" width="{bar - 2}" height="{top + plot_h - y(v):.1f}" '
                         f'fill="{COLORS[ci % len(COLORS)]}"><title>{e(row)} {e(c)}: {v:,.0f} records/s, '
                         f'{p99}{r["cpu_s_per_million"]:.2f} CPU s per 1M records</title></rect>')
            else:
                s.append(f'<text x="{x + bar / 2 - 1:.1f}" y="{top + plot_h - 4}" font-size="8" fill="#999" '
                         f'transform="rotate(-90 {x + bar / 2 - 1:.1f} {top + plot_h - 4})">n/a</text>')
        cx = x0 + bar * len(clients) / 2
        s.append(f'<text x="{cx:.1f}" y="{top + plot_h + 14}" text-anchor="end" '
                 f'transform="rotate(-35 {cx:.1f} {top + plot_h + 14})">{e(row)}</text>')
    s.append(f'<line x1="{left}" x2="{width - 20}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#333"/>')
    lx = left
    for ci, c in enumerate(clients):  # legend
        s.append(f'<rect x="{lx}" y="42" width="10" height="10" fill="{COLORS[ci % len(COLORS)]}"/>')
        s.append(f'<text x="{lx + 14}" y="51">{e(c)}</text>')
        lx += 24 + 7 * len(c)
    s.append("</svg>")
    return "\n".join(s) + "\n"


def cmd_report(a):
    rows, clients, by = load(a.results)
    if not rows:
        print("no results", file=sys.stderr)
        return 1
    meta = json.load(open(a.meta)) if a.meta and os.path.exists(a.meta) else {}
    print(text_table(rows, clients, by, meta))
    with open(a.md, "w") as f:
        f.write(md_table(rows, clients, by, meta))
    with open(a.svg, "w") as f:
        f.write(svg_chart(rows, clients, by, meta))
    return 0


def cmd_update(a):
    BEGIN, END = f"<!-- {a.marker}:begin -->", f"<!-- {a.marker}:end -->"
    text = open(a.benchmarks).read()
    i, j = text.find(BEGIN), text.find(END)
    if i < 0 or j < i:
        print(f"{a.benchmarks}: no {BEGIN} ... {END} section", file=sys.stderr)
        return 1
    body = open(a.md).read()
    with open(a.benchmarks, "w") as f:
        f.write(text[:i + len(BEGIN)] + "\n" + body + text[j:])
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    for k in ("--row", "--client", "--out", "--log"):
        r.add_argument(k, required=True)
    r.add_argument("--records", type=int, required=True)
    r.add_argument("--timeout", type=float, default=1800)
    r.add_argument("command", nargs=argparse.REMAINDER)
    t = sub.add_parser("stored")
    t.add_argument("--out", required=True)
    t.add_argument("--topic", required=True)
    t.add_argument("--payload-bytes", type=int, required=True)
    t.add_argument("command", nargs=argparse.REMAINDER)
    k = sub.add_parser("skip")
    for x in ("--row", "--client", "--out", "--status"):
        k.add_argument(x, required=True)
    q = sub.add_parser("report")
    q.add_argument("--results", required=True)
    q.add_argument("--meta")
    q.add_argument("--md", required=True)
    q.add_argument("--svg", required=True)
    u = sub.add_parser("update-benchmarks")
    u.add_argument("--md", required=True)
    u.add_argument("--benchmarks", required=True)
    u.add_argument("--marker", default="results")
    a = p.parse_args()
    if a.cmd in ("run", "stored"):
        a.command = a.command[1:] if a.command[:1] == ["--"] else a.command
        if not a.command:
            p.error(f"{a.cmd}: no command")
        return cmd_run(a) if a.cmd == "run" else cmd_stored(a)
    return {"skip": cmd_skip, "report": cmd_report, "update-benchmarks": cmd_update}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
