// The browser example's page script: calls the BrowserDemo service (examples/proto/browser)
// through gRPC-Web with Connect-ES and writes what comes back into the page, where a person
// or scripts/browser-test.sh (headless Chromium) reads it. Bundled into dist/app.js by
// esbuild (see README.md).
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { BrowserDemo } from "./gen/browser/browser_pb";

// The same values the browser test checks.
const ECHO_TEXT = "hello from the browser, ünïcödé ✓";
const COUNT = 5;
const INTERVAL_MS = 200;
const FAIL_CODE = Code.FailedPrecondition;
const FAIL_MESSAGE = "the cake is a lie: 100% sûr";
const STREAM_FAIL_CODE = Code.ResourceExhausted;
const STREAM_FAIL_MESSAGE = "3 is enough";

const $ = (id: string): HTMLElement => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no #${id} in the page`);
  return el;
};

function setText(id: string, text: string) {
  $(id).textContent = text;
}

function describe(code: Code): string {
  return `${code} ${Code[code]}`;
}

const meta = (name: string) => document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content;
// The gRPC server is on the page's host, at its own port: another origin. A page served
// from elsewhere can name the server with <meta name="grpc-base-url" content="http://...">.
const baseUrl = meta("grpc-base-url") ?? `${location.protocol}//${location.hostname}:${meta("grpc-port") ?? "50051"}`;
const client = createClient(BrowserDemo, createGrpcWebTransport({ baseUrl }));

async function streamInto(listId: string, count: number, failCode: number, failMessage: string) {
  const list = $(listId);
  const start = performance.now();
  for await (const reply of client.count({ count, intervalMs: INTERVAL_MS, failCode, failMessage })) {
    const li = document.createElement("li");
    const ms = Math.round(performance.now() - start);
    li.dataset.index = String(reply.index);
    li.dataset.ms = String(ms);
    li.textContent = `index ${reply.index}, arrived at +${ms} ms`;
    list.append(li);
  }
}

async function run() {
  document.body.dataset.state = "running";
  setText("state", "running");
  for (const id of ["unary", "stream-status", "error-code", "error-message", "stream-error-code", "stream-error-message"]) {
    setText(id, "");
  }
  $("stream").replaceChildren();
  $("stream-err").replaceChildren();

  const reply = await client.echo({ message: ECHO_TEXT });
  setText("unary", reply.message);

  await streamInto("stream", COUNT, 0, "");
  setText("stream-status", "OK");

  try {
    await client.fail({ code: FAIL_CODE, message: FAIL_MESSAGE });
    setText("error-code", "no error (unexpected)");
  } catch (e) {
    const err = ConnectError.from(e);
    setText("error-code", describe(err.code));
    setText("error-message", err.rawMessage);
  }

  try {
    await streamInto("stream-err", 3, STREAM_FAIL_CODE, STREAM_FAIL_MESSAGE);
    setText("stream-error-code", "no error (unexpected)");
  } catch (e) {
    const err = ConnectError.from(e);
    setText("stream-error-code", describe(err.code));
    setText("stream-error-message", err.rawMessage);
  }
}

async function main() {
  setText("server", baseUrl);
  const again = $("again") as HTMLButtonElement;
  again.onclick = () => void main();
  again.disabled = true;
  try {
    await run();
    document.body.dataset.state = "done";
    setText("state", "done");
  } catch (e) {
    // An unexpected failure (the server is down, CORS refused, a protocol error): shown,
    // and the state tells the test.
    const err = ConnectError.from(e);
    document.body.dataset.state = "failed";
    setText("state", `failed: ${describe(err.code)}: ${err.rawMessage}`);
  } finally {
    again.disabled = false;
  }
}

void main();
