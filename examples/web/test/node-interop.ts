// Connect-ES's gRPC-Web transports from Node (no browser) against our interop_server
// (grpc.testing.TestService, gRPC-Web on by default): connect-node over HTTP/1.1 and over
// HTTP/2, and connect-web (the browser transport, on Node's fetch) over HTTP/1.1.
//
//   esbuild test/node-interop.ts --bundle --platform=node --format=esm --outfile=X.mjs
//   node X.mjs http://127.0.0.1:PORT
//
// Prints PASS/FAIL per check; exits 1 on any failure.
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport as nodeTransport } from "@connectrpc/connect-node";
import { createGrpcWebTransport as webTransport } from "@connectrpc/connect-web";
import { TestService } from "../src/gen/grpc/testing/test_pb";

const baseUrl = process.argv[2];
if (!baseUrl) {
  console.error("usage: node node-interop.mjs http://HOST:PORT");
  process.exit(64);
}

let failed = 0;
function check(name: string, ok: boolean, detail: string) {
  console.log(`${ok ? "PASS" : "FAIL"} node: ${name}${ok ? "" : `: ${detail}`}`);
  if (!ok) failed++;
}

async function expectError(call: () => Promise<unknown>): Promise<ConnectError | undefined> {
  try {
    await call();
    return undefined;
  } catch (e) {
    return ConnectError.from(e);
  }
}

// The last field: whether to check that a client-streaming call is refused. Only over h2:
// fetch cannot stream a request body at all, and over HTTP/1.1 the server answers the
// refusal at once and closes the connection (hyper, the body left unread) while
// connect-node is still writing the body, which Node then reports as EPIPE instead of the
// answer (docs/grpc-web.md, end of "Proven in a browser").
const transports: [string, Transport, boolean][] = [
  ["connect-node http/1.1", nodeTransport({ baseUrl, httpVersion: "1.1" }), false],
  ["connect-node h2", nodeTransport({ baseUrl, httpVersion: "2" }), true],
  ["connect-web fetch", webTransport({ baseUrl }), false],
];

for (const [name, transport, clientStreaming] of transports) {
  const client = createClient(TestService, transport);
  try {
    const unary = await client.unaryCall({ responseSize: 6 }, { timeoutMs: 5000 });
    check(`${name} unary`, unary.payload?.body.length === 6, `payload ${unary.payload?.body.length} bytes`);

    const sizes: number[] = [];
    for await (const r of client.streamingOutputCall(
      { responseParameters: [{ size: 1 }, { size: 2 }, { size: 4 }] },
      { timeoutMs: 5000 },
    )) {
      sizes.push(r.payload?.body.length ?? -1);
    }
    check(`${name} server streaming`, sizes.join(",") === "1,2,4", `sizes [${sizes.join(",")}]`);

    const err = await expectError(() =>
      client.unaryCall({ responseStatus: { code: Code.NotFound, message: "gone away ✓" } }),
    );
    check(`${name} error status`, err?.code === Code.NotFound && err.rawMessage === "gone away ✓",
      err ? `${err.code} ${err.rawMessage}` : "no error");

    if (!clientStreaming) continue;
    const refused = await expectError(async () => {
      // Client streaming cannot be carried by gRPC-Web: the server says so.
      await client.streamingInputCall((async function* () { yield {}; })());
    });
    check(`${name} client streaming refused`, refused?.code === Code.Unimplemented,
      refused ? `${refused.code} ${refused.rawMessage}` : "no error");
  } catch (e) {
    check(`${name} (unexpected error)`, false, String(e));
  }
}
process.exit(failed ? 1 : 0);
