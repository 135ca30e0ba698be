// Token client: Node's ws package offering a signed token the ways a
// browser can (query parameter, Sec-WebSocket-Protocol).
// Usage: node token.mjs URL PROTOCOLS MESSAGE
//   PROTOCOLS: comma-separated subprotocols to offer ("" for none)
//   MESSAGE:   the JSON text sent once the connection is open
// Prints one JSON line: {"status":N} when the server refused the upgrade
// (N its HTTP status), else {"protocol":P,"first":<first message>}; or
// {"error":"..."}.
import WebSocket from "ws";

const [url, protocols, message] = process.argv.slice(2);
const offered = protocols ? protocols.split(",") : [];
const ws = new WebSocket(url, offered);
const timer = setTimeout(() => done({ error: "timed out" }), 30000);

function done(result) {
  clearTimeout(timer);
  console.log(JSON.stringify(result));
  try { ws.terminate(); } catch (e) {}
  process.exit(0);
}

ws.on("unexpected-response", (req, res) => done({ status: res.statusCode }));
ws.on("error", (err) => done({ error: String(err) }));
ws.on("open", () => ws.send(message));
ws.on("message", (data) => {
  let first;
  try {
    first = JSON.parse(data.toString("utf8"));
  } catch (e) {
    done({ error: "not JSON: " + data.toString("utf8").slice(0, 80) });
    return;
  }
  done({ protocol: ws.protocol, first });
});
