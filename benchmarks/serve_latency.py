"""`sfpp serve` on the bundled model: delivered frames/s, prompt-switch latency, server RSS with a slow page.

    python benchmarks/serve_latency.py [--seconds 60] [--switch-every 5] [--rss-minutes 10] [--port PORT]
                                       [--when-slow drop|wait] [--skip-rss]

Starts `python -m sfpp.cli.main serve --model toy` (this interpreter, SFPP_* variables removed) on
a free loopback port and talks to it as the page does, over its WebSocket (the `websockets`
client): one JSON ``ack`` per frame received.

1. Delivered frames/s: a page that draws every frame at once watches for ``--seconds`` (60);
   frames received per second of wall time from the first frame, overall and per second (min),
   plus the server's own count of frames dropped. Real time is the model's 16 fps.
2. Prompt-switch latency, in the same run: every ``--switch-every`` seconds (5) the prompt is
   switched (alternating red circle / green square prompts). Two numbers per switch:
   *generated*: seconds from the server receiving the switch to the first frame generated under
   the new prompt (the stream's own measurement, reported in the status messages), and
   *shown*: seconds from sending the switch to receiving the first frame generated under it
   (what a viewer waits: the chunks already queued for playback play first).
3. Server RSS with a slow page (``--rss-minutes``, 10; ``--skip-rss`` skips it): a page that
   takes one message every 0.5 s (and acknowledges the frames it takes; its network stack reads
   and answers pings, as a browser's does) watches for that long; the server's RSS (psutil, the
   server process; its ffmpeg recorder is a separate process, listed on its own) every 10 s.
4. A stalled page (``--stalled-seconds``, 90; 0 skips it): a page that reads nothing at all, so its
   socket fills up: the server's RSS every 5 s, and whether and when the server ends the session.

Prints the numbers, then one line ``JSON: {...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

RED = "a red circle moving on a black background"
GREEN = "a green square moving on a black background"
HEADER = struct.Struct("<4sIId")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, when_slow: str, workdir: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFPP_")}
    env["SFPP_HOME"] = os.path.join(workdir, "home")
    proc = subprocess.Popen([sys.executable, "-m", "sfpp.cli.main", "serve", "--model", "toy", "--port", str(port),
                             "--when-slow", when_slow, "--save-dir", os.path.join(workdir, "saved"),
                             "--max-seconds", "3600"],
                            cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"sfpp serve exited: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("sfpp serve did not start in 120 s")


async def watch(port: int, seconds: float, switch_every: float) -> dict:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=2**22) as ws:
        hello = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "start", "prompt": RED, "seed": 0}))
        t_first = None
        per_second: dict[int, int] = {}
        frames = 0
        switches = []  # {"sent": wall, "index": prompt index expected, "shown": wall}
        last_status = None
        prompt_index = 0
        next_switch = None
        while True:
            msg = await ws.recv()
            now = time.monotonic()
            if isinstance(msg, bytes):
                _, _, pidx, _ = HEADER.unpack(msg[: HEADER.size])
                await ws.send('{"type": "ack"}')
                if t_first is None:
                    t_first, next_switch = now, now + switch_every
                frames += 1
                per_second[int(now - t_first)] = per_second.get(int(now - t_first), 0) + 1
                if pidx != prompt_index:
                    prompt_index = pidx
                    for s in switches:
                        if s["index"] == pidx and "shown" not in s:
                            s["shown"] = now - s["sent"]
                if now - t_first >= seconds:
                    break
                if now >= next_switch and (not switches or "shown" in switches[-1]):
                    target = GREEN if len(switches) % 2 == 0 else RED
                    switches.append({"sent": now, "index": len(switches) + 1})
                    await ws.send(json.dumps({"type": "prompt", "text": target}))
                    next_switch = now + switch_every
            else:
                d = json.loads(msg)
                if d["type"] == "status":
                    last_status = d
                    for s, sw in zip(switches, d.get("switches") or []):
                        s["generated"] = sw["latency_s"]
        # one more status for the last switches' generation latency
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            msg = await ws.recv()
            if isinstance(msg, bytes):
                await ws.send('{"type": "ack"}')
                continue
            d = json.loads(msg)
            if d["type"] == "status":
                last_status = d
                if d.get("switches"):
                    for s, sw in zip(switches, d["switches"]):
                        s["generated"] = sw["latency_s"]
                    break
    wall = seconds
    full = [per_second[k] for k in sorted(per_second) if k < int(seconds)]
    return {"fps_model": hello["fps"], "frames": frames, "seconds": wall, "delivered_fps": frames / wall,
            "min_fps_per_second": min(full) if full else None, "server_dropped": last_status and last_status["dropped"],
            "server_generated": last_status and last_status["generated"],
            "switch_generated_s": [s.get("generated") for s in switches],
            "switch_shown_s": [s.get("shown") for s in switches]}


def sessions(port: int) -> int:
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5).read())["sessions"]


async def wait_free(port: int) -> None:
    """The previous page's session ends first (one stream at a time)."""
    deadline = time.monotonic() + 30
    while sessions(port):
        if time.monotonic() > deadline:
            raise SystemExit("the previous page's session did not end")
        await asyncio.sleep(0.1)


async def stalled_page(port: int, seconds: float, server_pid: int) -> dict:
    """A page that stops reading altogether (its socket fills up): server RSS, and whether the server lets go."""
    import psutil
    import websockets

    proc = psutil.Process(server_pid)
    await wait_free(port)
    rss = []
    ended_at = None
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=2**22, max_queue=1,
                                  ping_interval=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "start", "prompt": RED, "seed": 2}))
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            rss.append(proc.memory_info().rss / 2**20)
            if ended_at is None and not sessions(port):
                ended_at = time.monotonic() - t0
            await asyncio.sleep(5)
    return {"seconds": seconds, "rss_first_mib": rss[0], "rss_max_mib": max(rss), "rss_last_mib": rss[-1],
            "server_closed_it_after_s": ended_at}


async def slow_page(port: int, minutes: float, server_pid: int) -> dict:
    import psutil
    import websockets

    proc = psutil.Process(server_pid)
    samples = []
    await wait_free(port)
    # The page's network stack reads everything (and answers the server's keepalive pings, as a browser
    # does); the page itself takes one message every 0.5 s and acknowledges only the frames it took.
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", max_size=2**22, max_queue=None,
                                  ping_interval=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "start", "prompt": RED, "seed": 1}))
        t0 = time.monotonic()
        next_sample = t0
        received = 0
        status = None
        while time.monotonic() - t0 < minutes * 60:
            if time.monotonic() >= next_sample:
                kids = proc.children(recursive=True)
                samples.append({"t_s": round(time.monotonic() - t0, 1), "rss_mib": proc.memory_info().rss / 2**20,
                                "children_rss_mib": sum(k.memory_info().rss for k in kids) / 2**20})
                next_sample += 10
            msg = await ws.recv()
            if isinstance(msg, bytes):
                received += 1
                await ws.send('{"type": "ack"}')
            else:
                d = json.loads(msg)
                if d["type"] == "status":
                    status = d
            await asyncio.sleep(0.5)
    rss = [s["rss_mib"] for s in samples]
    later = [s["rss_mib"] for s in samples if s["t_s"] >= 60]
    status = status or {}
    return {"minutes": minutes, "frames_received": received, "samples": samples, "rss_first_mib": rss[0],
            "rss_at_1min_mib": later[0] if later else None, "rss_last_mib": rss[-1], "rss_max_mib": max(rss),
            "growth_after_1min_mib": (rss[-1] - later[0]) if later else None,
            "server_status": status}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--switch-every", type=float, default=5.0)
    ap.add_argument("--rss-minutes", type=float, default=10.0)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--stalled-seconds", type=float, default=90.0, help="0 skips the stalled page")
    ap.add_argument("--when-slow", default="drop", choices=["drop", "wait"])
    ap.add_argument("--port", type=int, default=None)
    args = ap.parse_args()
    port = args.port or free_port()
    with tempfile.TemporaryDirectory(prefix="sfpp-serve-bench-") as work:
        t0 = time.monotonic()
        server = start_server(port, args.when_slow, work)
        startup = time.monotonic() - t0
        try:
            res = {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
                   "server_startup_s": startup}
            w = asyncio.run(watch(port, args.seconds, args.switch_every))
            res["watch"] = w
            gen = [x for x in w["switch_generated_s"] if x is not None]
            shown = [x for x in w["switch_shown_s"] if x is not None]
            print(f"server start (import + load toy model): {startup:.1f} s")
            print(f"delivered: {w['frames']} frames in {w['seconds']:.0f} s = {w['delivered_fps']:.2f} frames/s "
                  f"(model: {w['fps_model']} fps; slowest second {w['min_fps_per_second']}; server dropped "
                  f"{w['server_dropped']})")
            if gen:
                print(f"prompt switch -> first frame generated under it: median {statistics.median(gen):.3f} s, "
                      f"max {max(gen):.3f} s over {len(gen)} switches")
            if shown:
                print(f"prompt switch -> first such frame received by the page: "
                      f"median {statistics.median(shown):.3f} s, max {max(shown):.3f} s")
            if not args.skip_rss:
                r = asyncio.run(slow_page(port, args.rss_minutes, server.pid))
                res["slow_page"] = r
                at1, growth = r["rss_at_1min_mib"], r["growth_after_1min_mib"]
                print(f"slow page ({args.rss_minutes:g} min, one message per 0.5 s, {r['frames_received']} frames): "
                      f"server RSS first {r['rss_first_mib']:.1f} MiB, at 1 min "
                      f"{'-' if at1 is None else f'{at1:.1f}'} MiB, last {r['rss_last_mib']:.1f} MiB, max "
                      f"{r['rss_max_mib']:.1f} MiB (growth after 1 min "
                      f"{'-' if growth is None else f'{growth:+.1f}'} MiB)")
                for s in r["samples"][:: max(1, len(r["samples"]) // 12)]:
                    print(f"  t={s['t_s']:6.1f} s  server {s['rss_mib']:7.1f} MiB  "
                          f"ffmpeg {s['children_rss_mib']:6.1f} MiB")
            if args.stalled_seconds > 0:
                r = asyncio.run(stalled_page(port, args.stalled_seconds, server.pid))
                res["stalled_page"] = r
                closed = r["server_closed_it_after_s"]
                print(f"stalled page ({args.stalled_seconds:g} s, reads nothing): server RSS first "
                      f"{r['rss_first_mib']:.1f} MiB, max {r['rss_max_mib']:.1f} MiB, "
                      f"last {r['rss_last_mib']:.1f} MiB; "
                      + (f"the server ended the session after {closed:.0f} s (keepalive ping unanswered)"
                         if closed is not None else "the session was still open"))
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
    print("JSON: " + json.dumps(res))


if __name__ == "__main__":
    main()
