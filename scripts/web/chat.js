// The chat demo's client: one WebSocket to the chat integration
// (scripts/chat.lua). Its protocol, every frame a JSON object:
//   send  {"user","room"} first, then {"type":"say"|"whisper"|"members"|"leave", ...}
//   get   welcome, joined, left, message, whisper, sent, members, bye, replaced,
//         a failure body {"id":"auth"|"comm","success":false,"error","message"}
//         or an error frame {"id":"error","error","message"}.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const path = new URLSearchParams(location.search).get("path") || "/chat";
  const wsURL = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;

  let ws = null;
  let me = "";
  let members = [];
  let ending = ""; // why the server is about to close: "bye" or "replaced"

  // closeText says in words why the connection closed (the server's close
  // codes are listed in the README, "What clients see").
  function closeText(code, reason) {
    if (ending === "bye") return "You left the room.";
    if (ending === "replaced") return "You logged in somewhere else, so this tab was disconnected.";
    const words = {
      1000: "the server closed the connection",
      1001: "the server is shutting down or restarting",
      1002: "the browser broke the WebSocket protocol",
      1003: "the server takes only text messages",
      1006: "the connection was lost (the server or the network went away)",
      1007: "a message was not a JSON object",
      1008: "the server refused this client (login refused, too slow, too many messages, or no login in time)",
      1009: "a message was too large",
      1011: "the server hit an error in the chat script",
    }[code] || "the connection closed (code " + code + ")";
    return "Disconnected: " + words + (reason ? " (" + reason + ")" : "") + ".";
  }

  function status(text) {
    $("status").textContent = text;
  }

  // line adds one entry to the log; kind is a CSS class (message, whisper,
  // notice, error, mine).
  function line(kind, who, text) {
    const li = document.createElement("li");
    li.className = kind;
    if (who) {
      const b = document.createElement("b");
      b.textContent = who;
      li.appendChild(b);
    }
    const span = document.createElement("span");
    span.textContent = text;
    li.appendChild(span);
    $("log").appendChild(li);
    li.scrollIntoView({ block: "end" });
  }

  function showMembers() {
    const ul = $("members");
    ul.replaceChildren();
    const to = $("to");
    const chosen = to.value;
    to.replaceChildren(new Option("everyone", ""));
    for (const m of members) {
      const li = document.createElement("li");
      li.textContent = m === me ? m + " (you)" : m;
      ul.appendChild(li);
      if (m !== me) to.appendChild(new Option(m, m));
    }
    to.value = members.includes(chosen) && chosen !== me ? chosen : "";
  }

  function setMembers(list) {
    members = [...new Set(list)].sort();
    showMembers();
  }

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(obj));
  }

  function showChat(on) {
    $("login").hidden = on;
    $("chat").hidden = !on;
    if (on) $("text").focus();
  }

  function receive(msg) {
    if (msg.id === "error") {
      line("error", "", msg.error + ": " + msg.message);
      return;
    }
    if (msg.success === false) {
      line("error", "", (msg.message || msg.error || "refused"));
      status("Refused: " + (msg.message || msg.error));
      return;
    }
    switch (msg.type) {
      case "welcome":
        $("room-name").textContent = msg.room;
        $("me").textContent = msg.user;
        setMembers(msg.members || []);
        showChat(true);
        status("Connected to " + msg.room + " as " + msg.user + ".");
        line("notice", "", "Welcome, " + msg.user + ". In the room: " + members.join(", ") + ".");
        break;
      case "joined":
        setMembers(members.concat([msg.user]));
        line("notice", "", msg.user + " joined.");
        break;
      case "left":
        setMembers(members.filter((m) => m !== msg.user));
        line("notice", "", msg.user + " left.");
        break;
      case "message":
        line("message", msg.from, msg.text);
        break;
      case "whisper":
        line("whisper", msg.from + " (whisper)", msg.text);
        break;
      case "sent":
        line("mine", msg.to ? "you to " + msg.to : "you", msg.text);
        break;
      case "members":
        setMembers(msg.members || []);
        break;
      case "bye":
        ending = "bye";
        line("notice", "", "You left the room.");
        break;
      case "replaced":
        ending = "replaced";
        line("notice", "", "You logged in somewhere else: this tab is disconnected.");
        break;
      default:
        line("notice", "", JSON.stringify(msg));
    }
  }

  function connect(user, room) {
    me = user;
    ending = "";
    status("Connecting to " + wsURL + " ...");
    $("join").disabled = true;
    $("log").replaceChildren();
    ws = new WebSocket(wsURL);
    ws.onopen = () => ws.send(JSON.stringify({ user: user, room: room }));
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        line("error", "", "not JSON: " + ev.data);
        return;
      }
      receive(msg);
    };
    ws.onclose = (ev) => {
      ws = null;
      $("join").disabled = false;
      showChat(false);
      status(closeText(ev.code, ev.reason) + " Join again?");
    };
  }

  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    connect($("user").value.trim(), $("room").value.trim());
  });

  $("say").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("text").value;
    if (!text) return;
    const to = $("to").value;
    send(to ? { type: "whisper", to: to, text: text } : { type: "say", text: text });
    $("text").value = "";
  });

  $("leave").addEventListener("click", () => send({ type: "leave" }));
})();
