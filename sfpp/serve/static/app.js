// sfpp serve: the page. One WebSocket; binary messages are frames (20-byte header + JPEG), text ones JSON.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const canvas = $("video"), ctx = canvas.getContext("2d");
  // What tests (and the curious) can read: window.sfpp.
  const S = window.sfpp = { connected: false, frames: 0, drawn: 0, t: 0, index: -1, promptIndex: 0, schedule: [],
                           status: null, saved: null, errors: [], busy: null, ended: null, hello: null, seed: null };
  let ws = null, paused = false, lastDrawn = -1, drawTimes = [];

  // The token (if any) came in the address; the server set a cookie from it, so drop it from the bar.
  if (location.search.includes("token=")) history.replaceState(null, "", location.pathname);

  function setState(text, level) {
    const el = $("state");
    el.textContent = text;
    el.className = "state" + (level ? " " + level : "");
  }
  function notice(text, bad) {
    const el = $("notice");
    el.hidden = !text;
    el.textContent = text || "";
    el.className = "notice" + (bad ? " bad" : "");
  }
  function send(msg) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); }

  function renderSchedule() {
    const ol = $("schedule");
    ol.textContent = "";
    S.schedule.forEach((e, i) => {
      const li = document.createElement("li");
      li.textContent = `${e.at.toFixed(2)} s: ${e.text}`;
      if (i === S.promptIndex) li.className = "now";
      ol.appendChild(li);
    });
  }

  function showNow() {  // once frames of a switched-to prompt play
    const e = S.schedule[S.promptIndex];
    if (e && S.promptIndex > 0) $("prompt-note").textContent = `now showing “${e.text}” (since ${e.at.toFixed(2)} s)`;
  }

  async function onFrame(buf) {
    const view = new DataView(buf);
    const magic = String.fromCharCode(view.getUint8(0), view.getUint8(1), view.getUint8(2), view.getUint8(3));
    if (magic !== "SFPF") return;
    const index = view.getUint32(4, true), promptIndex = view.getUint32(8, true), t = view.getFloat64(12, true);
    S.frames += 1;
    try {
      const bmp = await createImageBitmap(new Blob([new Uint8Array(buf, 20)], { type: "image/jpeg" }));
      if (index > lastDrawn) {
        if (canvas.width !== bmp.width || canvas.height !== bmp.height) { canvas.width = bmp.width; canvas.height = bmp.height; }
        ctx.drawImage(bmp, 0, 0);
        lastDrawn = index;
        S.index = index; S.t = t; S.drawn += 1;
        if (promptIndex !== S.promptIndex) {
          S.promptIndex = promptIndex;
          renderSchedule();
          showNow();
        }
        $("time").textContent = t.toFixed(1) + " s";
        const now = performance.now();
        drawTimes.push(now);
        while (drawTimes.length && drawTimes[0] < now - 2000) drawTimes.shift();
      }
      bmp.close();
    } finally {
      send({ type: "ack" });
    }
  }

  function onStatus(m) {
    S.status = m;
    if (m.schedule) { S.schedule = m.schedule; renderSchedule(); showNow(); }
    $("counts").textContent = `generated ${m.generated} · sent ${m.sent} · drawn ${m.drawn} · dropped ${m.dropped}`;
    const slow = m.state.startsWith("the page is slow"), behind = m.state.startsWith("generation is behind");
    let text = m.state;
    if (m.pending_prompt) text += " · switching at the next chunk";
    setState(text, slow || behind ? "warn" : (m.state === "failed" ? "bad" : ""));
  }

  function onMessage(m) {
    switch (m.type) {
      case "hello":
        S.hello = m;
        $("model").textContent = `model ${m.model} · ${m.width}×${m.height} at ${m.fps} fps · up to ${m.limits.max_seconds} s per stream`;
        $("prompt").maxLength = m.limits.max_prompt_chars;
        if (!$("prompt").value) $("prompt").value = m.prompt;
        send({ type: "start", prompt: $("prompt").value, seed: null });
        break;
      case "started":
        S.seed = m.seed; S.schedule = [{ at: 0, text: m.prompt }]; S.promptIndex = 0; S.ended = null;
        lastDrawn = -1; S.index = -1;
        $("seed").textContent = m.seed;
        renderSchedule();
        setState("starting…");
        if (m.warning) { notice(m.warning, true); setTimeout(() => notice(""), 12000); }
        break;
      case "status": onStatus(m); break;
      case "prompt_queued":
        $("prompt-note").textContent = `queued: “${m.text}” (from the next chunk)`;
        if (m.warning) { notice(m.warning, true); setTimeout(() => notice(""), 12000); }
        break;
      case "saved": {
        S.saved = m;
        const el = $("saved");
        el.textContent = `saved ${m.frames} frames (${m.seconds.toFixed(1)} s) as ${m.path}: `;
        for (const [href, label] of [[m.mp4, "video (MP4)"], [m.json, "sidecar (JSON)"]]) {
          const a = document.createElement("a");
          a.href = href; a.download = href.split("/").pop(); a.textContent = label;
          el.appendChild(a);
        }
        break;
      }
      case "error": S.errors.push(m.message); notice(m.message, true); setTimeout(() => notice(""), 8000); break;
      case "end": S.ended = m.reason; setState("ended: " + m.reason, "warn"); break;
      case "busy": S.busy = m.message; notice(m.message, true); setState("busy", "bad"); break;
    }
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => { S.connected = true; setState("connected"); };
    ws.onmessage = (ev) => { if (typeof ev.data === "string") onMessage(JSON.parse(ev.data)); else onFrame(ev.data); };
    ws.onclose = (ev) => {
      S.connected = false;
      if (!S.busy) setState(ev.code === 1008 ? "refused: " + (ev.reason || "forbidden") : "disconnected (reload to reconnect)", "bad");
    };
  }

  setInterval(() => {
    const now = performance.now();
    const recent = drawTimes.filter((x) => x >= now - 2000);
    const fps = recent.length > 1 ? (recent.length - 1) / ((recent[recent.length - 1] - recent[0]) / 1000) : 0;
    S.fps = paused ? 0 : fps;
    $("fps").textContent = S.fps.toFixed(1);
  }, 500);

  $("prompt-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("prompt").value.trim();
    if (!text) return;
    $("prompt-note").textContent = "";
    send({ type: "prompt", text });
  });
  $("pause").addEventListener("click", () => {
    paused = !paused;
    send({ type: paused ? "pause" : "resume" });
    $("pause").textContent = paused ? "Resume" : "Pause";
  });
  $("restart").addEventListener("click", () => {
    const seed = $("new-seed").value.trim();
    paused = false; $("pause").textContent = "Pause";
    send({ type: "restart", prompt: $("prompt").value.trim() || null, seed: seed === "" ? null : seed });
  });
  $("save").addEventListener("click", () => { $("saved").textContent = "saving…"; send({ type: "save" }); });

  connect();
})();
