// chat.mjs drives the chat demo page (scripts/web) in two headless Chromium
// pages, as two people in two tabs would: both log in to one room, each
// says something the other sees, and both log out. It saves screenshots.
// tests/browser_test.go runs it against a server it started:
//
//   node chat.mjs --url http://127.0.0.1:PORT/ --out DIR [--chromium /usr/bin/chromium]
//
// Every step has a bound; any failure exits 1 with the reason and the
// pages' console output. Progress goes to stdout, one line per step.
import { chromium } from "playwright-core";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    out: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    room: { type: "string", default: "browser" },
  },
});
if (!args.url || !args.out) {
  console.error("usage: node chat.mjs --url URL --out DIR [--chromium PATH] [--room ROOM]");
  process.exit(2);
}

const STEP = 10_000; // ms: bound of every wait
const log = (...a) => console.log("browser:", ...a);
const consoleLines = [];

// A fresh profile (--user-data-dir, which Playwright passes for a
// persistent context) and two tabs in it, as a newcomer would open them.
const profile = mkdtempSync(join(tmpdir(), "es-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: args.chromium,
  headless: true,
  timeout: 30_000,
  viewport: { width: 900, height: 640 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

// open returns a new tab on the page.
async function open(name) {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP);
  page.on("console", (m) => consoleLines.push(`${name} console ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`${name} page error: ${e.message}`));
  const resp = await page.goto(args.url, { waitUntil: "load" });
  if (!resp || !resp.ok()) throw new Error(`${name}: GET ${args.url}: ${resp && resp.status()}`);
  return page;
}

// centred checks that the login card sits in the middle of the page's
// column, as the chat does.
async function centred(page, who) {
  const gap = await page.evaluate(() => {
    const card = document.getElementById("login").getBoundingClientRect();
    const column = document.querySelector("main").getBoundingClientRect();
    return Math.abs((card.left - column.left) - (column.right - card.right));
  });
  if (gap > 1) throw new Error(`${who}: the login card is off centre by ${gap}px`);
}

async function login(page, user) {
  await centred(page, user);
  await page.fill("#user", user);
  await page.fill("#room", args.room);
  await page.click("#join");
  await page.waitForSelector("#chat:not([hidden])");
  await page.waitForFunction((u) => document.getElementById("me").textContent === u, user);
  log(`${user} logged in to ${args.room}`);
}

// logText returns the chat log's lines.
const logText = (page) => page.$$eval("#log li", (lis) => lis.map((li) => li.textContent));

async function expectLine(page, who, text) {
  try {
    await page.waitForFunction(
      ([t]) => [...document.querySelectorAll("#log li")].some((li) => li.textContent.includes(t)),
      [text],
    );
  } catch (e) {
    throw new Error(`${who} never saw ${JSON.stringify(text)}; the log: ${JSON.stringify(await logText(page))}`);
  }
}

async function members(page) {
  return page.$$eval("#members li", (lis) => lis.map((li) => li.textContent));
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
}

let failed = false;
try {
  const alice = await open("alice");
  const bob = await open("bob");
  await login(alice, "alice");
  await login(bob, "bob");
  await expectLine(alice, "alice", "bob joined.");
  await alice.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
  log("members seen by alice:", JSON.stringify(await members(alice)));

  await say(alice, "hello bob, from alice");
  await expectLine(bob, "bob", "hello bob, from alice");
  log("bob saw alice's message");
  await say(bob, "hi alice, bob here");
  await expectLine(alice, "alice", "hi alice, bob here");
  log("alice saw bob's message");

  // a whisper, chosen in the "to" list
  await bob.selectOption("#to", "alice");
  await say(bob, "a secret for alice");
  await expectLine(alice, "alice", "a secret for alice");
  log("alice got bob's whisper");

  const shots = [join(args.out, "chat-alice.png"), join(args.out, "chat-bob.png")];
  await alice.screenshot({ path: shots[0], fullPage: true });
  await bob.screenshot({ path: shots[1], fullPage: true });
  for (const s of shots) log("screenshot", s);

  await alice.click("#leave");
  await alice.waitForSelector("#login:not([hidden])");
  // The close is said in words, not as a code.
  await alice.waitForFunction(() => document.getElementById("status").textContent.startsWith("You left the room."));
  const status = await alice.$eval("#status", (el) => el.textContent);
  if (/\d{4}/.test(status)) throw new Error(`alice's status shows a close code: ${JSON.stringify(status)}`);
  log("alice's status:", JSON.stringify(status));
  await centred(alice, "alice after leaving");
  await expectLine(bob, "bob", "alice left.");
  log("alice logged out; bob saw her leave");
  await bob.click("#leave");
  await bob.waitForSelector("#login:not([hidden])");
  log("bob logged out");
  const after = join(args.out, "chat-after-logout.png");
  await bob.screenshot({ path: after, fullPage: true });
  log("screenshot", after);
} catch (e) {
  failed = true;
  console.error("browser: FAILED:", e.message);
} finally {
  for (const l of consoleLines) console.log("browser:", l);
  await browser.close();
}
if (failed) process.exit(1);
log("ok");
