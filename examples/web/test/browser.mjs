// Drives the browser example's page in headless Chromium (Debian's /usr/bin/chromium, with
// playwright-core) and checks what it shows: the unary reply, the streamed replies in
// order and arriving one by one, the error status (code and message) of a Trailers-Only
// answer and of a stream's trailer frame. Takes a screenshot.
//
//   node test/browser.mjs PAGE_URL SCREENSHOT.png
//
// Exits 1 on any mismatch (every check is printed PASS/FAIL), 2 if the page did not finish.
import { chromium } from "playwright-core";

const [pageUrl, screenshot] = process.argv.slice(2);
if (!pageUrl || !screenshot) {
  console.error("usage: node test/browser.mjs PAGE_URL SCREENSHOT.png");
  process.exit(64);
}
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
// The values src/app.ts sends.
const ECHO_TEXT = "hello from the browser, ünïcödé ✓";
const COUNT = 5;
const INTERVAL_MS = 200;

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // As root Chromium needs --no-sandbox; the rest keeps it off the (closed) network.
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
  timeout: 30_000,
});
let failed = 0;
const check = (name, ok, detail) => {
  console.log(`${ok ? "PASS" : "FAIL"} browser: ${name}${ok ? "" : `: ${detail}`}`);
  if (!ok) failed++;
};
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 720 } });
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`page error: ${e.message}`));
  // Chromium sends CORS preflights from its network service; playwright's request events
  // do not show them, the DevTools protocol does (initiator "preflight").
  const preflights = [];
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  cdp.on("Network.requestWillBeSent", (e) => {
    if (e.initiator?.type === "preflight") preflights.push(`${e.request.method} ${new URL(e.request.url).pathname}`);
  });
  const grpcCalls = [];
  page.on("response", (r) => {
    if (r.request().method() === "POST") grpcCalls.push(`${r.status()} ${new URL(r.url()).pathname}`);
  });

  await page.goto(pageUrl, { timeout: 15_000 });
  const state = await page
    .waitForFunction(() => ["done", "failed"].includes(document.body.dataset.state), null, { timeout: 30_000 })
    .then(() => page.evaluate(() => document.body.dataset.state), () => "timeout");
  await page.screenshot({ path: screenshot, fullPage: true });
  const text = (id) => page.locator(`#${id}`).textContent();
  if (state !== "done") {
    console.log(`FAIL browser: page state ${state}: ${await text("state")}`);
    for (const l of consoleLines) console.log(`  ${l}`);
    process.exitCode = 2;
  } else {
    check("unary Echo reply", (await text("unary")) === `echo: ${ECHO_TEXT}`, await text("unary"));

    const items = await page.$$eval("#stream li", (lis) => lis.map((li) => ({ i: Number(li.dataset.index), ms: Number(li.dataset.ms) })));
    const order = items.map((x) => x.i).join(",");
    check(`server streaming: ${COUNT} replies in order`, order === "1,2,3,4,5", `got [${order}]`);
    // Each reply is written when the handler yields it: the first must reach the page well
    // before the last, not all at once at the end of the response.
    const spread = items.length ? items[items.length - 1].ms - items[0].ms : 0;
    check(`server streaming: replies arrive one by one (first to last ${spread} ms)`,
      spread >= (COUNT - 1) * INTERVAL_MS * 0.5, `arrival times ${items.map((x) => x.ms).join(",")} ms`);
    check("server streaming: status OK", (await text("stream-status")) === "OK", await text("stream-status"));

    check("error status code (Trailers-Only)", (await text("error-code")) === "9 FailedPrecondition", await text("error-code"));
    check("error status message (percent-encoded on the wire)",
      (await text("error-message")) === "the cake is a lie: 100% sûr", await text("error-message"));

    const errItems = await page.$$eval("#stream-err li", (lis) => lis.map((li) => li.dataset.index).join(","));
    check("stream then error: 3 replies before the status", errItems === "1,2,3", `got [${errItems}]`);
    check("stream then error: code from the trailer frame", (await text("stream-error-code")) === "8 ResourceExhausted", await text("stream-error-code"));
    check("stream then error: message from the trailer frame", (await text("stream-error-message")) === "3 is enough", await text("stream-error-message"));

    // The page is another origin: Chromium must have preflighted the calls (and CORS let
    // them through, or nothing above would have passed).
    // One per distinct call path (Echo, Count, Fail); the second Count uses the cached answer.
    check(`CORS preflights sent by the browser and answered (${preflights.length})`,
      preflights.length >= 3 && preflights.every((p) => p.startsWith("OPTIONS ")), `saw [${preflights.join("; ")}]`);
    console.log(`  calls: ${grpcCalls.join("; ")}; preflights: ${preflights.length}; browser ${browser.version()}`);
  }

  // The same page from an origin the server does not allow: the browser must refuse to
  // hand over the answers (the server answers the preflight 403 without CORS headers).
  const html = (await (await fetch(pageUrl)).text()).replace(
    "<head>", `<head><meta name="grpc-base-url" content="${new URL(pageUrl).protocol}//127.0.0.1:${await page.evaluate(
      () => document.querySelector('meta[name="grpc-port"]').content)}">`);
  const appJs = await (await fetch(new URL("/app.js", pageUrl))).text();
  const evil = await browser.newPage();
  await evil.route("http://not-allowed.test/**", (route) => {
    const js = route.request().url().endsWith("/app.js");
    route.fulfill({ status: 200, contentType: js ? "text/javascript" : "text/html", body: js ? appJs : html });
  });
  await evil.goto("http://not-allowed.test/", { timeout: 15_000 });
  const evilState = await evil
    .waitForFunction(() => ["done", "failed"].includes(document.body.dataset.state), null, { timeout: 30_000 })
    .then(() => evil.locator("#state").textContent(), () => "timeout");
  check("a page from an origin not allowed is refused by the browser (CORS)",
    evilState.startsWith("failed") && evilState.includes("Failed to fetch"), `state: ${evilState}`);
  const grpcUrl = await page.evaluate(() => document.getElementById("server").textContent);
  const refused = await fetch(`${grpcUrl}/grpc.examples.browser.BrowserDemo/Echo`, {
    method: "OPTIONS",
    headers: { origin: "http://not-allowed.test", "access-control-request-method": "POST" },
  });
  check("the server answers that origin's preflight 403 without CORS headers",
    refused.status === 403 && !refused.headers.has("access-control-allow-origin"),
    `${refused.status} ${[...refused.headers].join(" ")}`);
  if (failed) {
    process.exitCode = 1;
    for (const l of consoleLines) console.log(`  ${l}`);
  }
} finally {
  await browser.close();
}
