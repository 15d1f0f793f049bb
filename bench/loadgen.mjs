// A lean gRPC load generator on Node's built-in HTTP/2 (nghttp2, in C).
//
// Why not Python: on a 2-core machine the load generator shares the CPU
// with the server and PostgreSQL, and a grpc.aio client spends several
// hundred microseconds of CPU per call. At 4x a server's sustained rate the
// load processes then took much of the machine, and an overload benchmark
// measured them as much as the server. Here requests are framed once, by
// the Python side (bench/overload.py), and sent as bytes: a call costs a
// stream, a timer and a status read from the trailers.
//
// Usage: node bench/loadgen.mjs SPEC.json > RESULTS.json
// SPEC: {addr, path, bodies: [base64 gRPC-framed message, ...], metadata: {k: v},
//        mode: "open" | "closed", rate, seconds, callers, calls, deadline_ms,
//        connections}
// RESULTS: {codes: {NAME: n}, messages: {NAME: first grpc-message},
//           latency: {NAME: {p50, p99} seconds}, ok: [seconds, ...], shed: [seconds, ...],
//           cpu_seconds, sent, late_ms}
// `late_ms` is how far behind schedule the open loop fell at worst: when it
// is large, the generator itself could not offer the load asked of it.
import http2 from "node:http2";
import fs from "node:fs";

const CODES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
  "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
  "UNAUTHENTICATED",
];

const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const bodies = spec.bodies.map((b) => Buffer.from(b, "base64"));
const sessions = [];
for (let i = 0; i < (spec.connections || 4); i++) {
  const session = http2.connect(`http://${spec.addr}`);
  session.on("error", () => {}); // a call's own stream reports what it saw
  sessions.push(session);
}

const codes = {};
const messages = {}; // the first grpc-message seen with each code
const ok = [];
const shed = [];
let sent = 0;
let pending = 0;

const seconds_by_code = {};

function record(code, seconds) {
  codes[code] = (codes[code] || 0) + 1;
  (seconds_by_code[code] ||= []).push(seconds);
  if (code === "OK") ok.push(seconds);
  else if (code === "RESOURCE_EXHAUSTED") shed.push(seconds);
}

function call(i) {
  return new Promise((resolve) => {
    const start = process.hrtime.bigint();
    const headers = {
      ":method": "POST",
      ":path": spec.path,
      "content-type": "application/grpc",
      te: "trailers",
      "grpc-timeout": `${spec.deadline_ms}m`,
      ...spec.metadata,
    };
    let status = null;
    let done = false;
    const finish = (code) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      pending--;
      record(code, Number(process.hrtime.bigint() - start) / 1e9);
      resolve();
    };
    const readStatus = (h) => {
      if (h["grpc-status"] === undefined) return;
      status = CODES[Number(h["grpc-status"])] || "UNKNOWN";
      if (!(status in messages)) messages[status] = decodeURIComponent(h["grpc-message"] || "");
    };
    pending++;
    sent++;
    const stream = sessions[i % sessions.length].request(headers);
    // The client's own deadline, as a gRPC client library keeps it: the
    // server may never answer a call it has not yet read.
    const timer = setTimeout(() => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      finish("DEADLINE_EXCEEDED");
    }, spec.deadline_ms);
    stream.on("response", readStatus);
    stream.on("trailers", readStatus);
    stream.on("data", () => {});
    stream.on("error", () => {});
    stream.on("close", () => finish(status || "UNAVAILABLE"));
    stream.end(bodies[i % bodies.length]);
  });
}

async function closedLoop() {
  const until = performance.now() + spec.seconds * 1000;
  let i = 0;
  const caller = async () => {
    while (spec.calls ? i < spec.calls : performance.now() < until) await call(i++);
  };
  await Promise.all(Array.from({ length: spec.callers }, caller));
  return 0;
}

function openLoop() {
  // Calls go out on schedule whatever the answers, as independent agents'
  // calls do; each tick sends every call now due.
  return new Promise((resolve) => {
    const start = performance.now();
    const total = Math.floor(spec.rate * spec.seconds);
    let i = 0;
    let late = 0;
    const tick = () => {
      const now = performance.now() - start;
      while (i < total && (i / spec.rate) * 1000 <= now) {
        late = Math.max(late, now - (i / spec.rate) * 1000);
        call(i++);
      }
      if (i < total) setTimeout(tick, Math.max(0, (i / spec.rate) * 1000 - now));
      else {
        const wait = () => (pending ? setTimeout(wait, 5) : resolve(late));
        wait();
      }
    };
    tick();
  });
}

const cpuBefore = process.cpuUsage();
const late = spec.mode === "open" ? await openLoop() : await closedLoop();
const cpu = process.cpuUsage(cpuBefore);
for (const session of sessions) session.close();
process.stdout.write(
  JSON.stringify({
    codes,
    messages,
    latency: Object.fromEntries(
      Object.entries(seconds_by_code).map(([code, list]) => {
        list.sort((a, b) => a - b);
        const at = (q) => list[Math.min(list.length - 1, Math.floor(list.length * q))];
        return [code, { p50: at(0.5), p99: at(0.99) }];
      }),
    ),
    ok,
    shed,
    sent,
    late_ms: late,
    cpu_seconds: (cpu.user + cpu.system) / 1e6,
  }),
);
