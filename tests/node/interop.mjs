// Interoperability client: Node's ws package against the real server.
// Usage: node interop.mjs ws://127.0.0.1:PORT/echo N
// Logs in ({} -> {"ok":true}), makes N round trips (each message echoed
// whole), closes with 1000 and prints one JSON line:
//   {"roundTrips":N,"errors":[...],"closeCode":1000}
// Exit status 0 only when every round trip matched, no error event came and
// the close handshake completed with 1000.
import WebSocket from "ws";

const [url, nArg] = process.argv.slice(2);
const n = Number(nArg || 1000);
const errors = [];
let roundTrips = 0;
let closeCode = null;

const ws = new WebSocket(url);
const timer = setTimeout(() => {
  errors.push("timed out");
  finish();
}, 60000);

function payload(i) {
  return JSON.stringify({ i, text: "round trip " + i + " \u03ba\u1f79\u03c3\u03bc\u03b5", pad: "x".repeat(i % 300) });
}

function finish() {
  clearTimeout(timer);
  console.log(JSON.stringify({ roundTrips, errors, closeCode }));
  process.exit(errors.length === 0 && roundTrips === n && closeCode === 1000 ? 0 : 1);
}

let expected = null;
ws.on("open", () => {
  expected = '{"ok":true}';
  ws.send("{}");
});
ws.on("message", (data, isBinary) => {
  const got = data.toString("utf8");
  if (isBinary) {
    errors.push("binary message");
  }
  // The server re-encodes JSON with sorted keys: compare as JSON.
  let same = false;
  try {
    same = JSON.stringify(sortKeys(JSON.parse(got))) === JSON.stringify(sortKeys(JSON.parse(expected)));
  } catch (e) {
    errors.push("not JSON: " + got.slice(0, 80));
  }
  if (!same) {
    errors.push("got " + got.slice(0, 80) + " want " + expected.slice(0, 80));
    ws.close(1000);
    return;
  }
  if (expected !== '{"ok":true}') {
    roundTrips++;
  }
  if (roundTrips === n) {
    ws.close(1000);
    return;
  }
  expected = payload(roundTrips);
  ws.send(expected);
});
ws.on("error", (err) => errors.push("error event: " + err.message));
ws.on("close", (code) => {
  closeCode = code;
  finish();
});

function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === "object") {
    const out = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys(v[k]);
    return out;
  }
  return v;
}
