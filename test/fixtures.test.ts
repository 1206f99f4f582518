// The L7 test peers on their own, without the mesh: the backends answer HTTP/1.1, h2c and
// gRPC as documented, and the clients count what they see. No root needed: loopback only.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fixturePath } from '../scripts/testbed/testbed.js';

const READY_TIMEOUT_MS = 10_000;
const children = new Set<ChildProcess>();
// Also on a crash of the test process itself: no backend outlives it.
process.on('exit', () => children.forEach((child) => child.kill('SIGKILL')));

/** Starts a backend fixture on an ephemeral loopback port; resolves with that port. */
function startBackend(script: string, args: string[]): Promise<number> {
  const child = spawn(process.execPath, [fixturePath(script), '--host', '127.0.0.1', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`${script} did not print "ready" in ${READY_TIMEOUT_MS} ms; stderr: ${stderr}`)), READY_TIMEOUT_MS);
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const port = /^port (\d+)$/m.exec(stdout);
      if (port !== null && /^ready$/m.test(stdout)) {
        clearTimeout(timer);
        resolve(Number(port[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${code}) before it was ready; stderr: ${stderr}`));
    });
  });
}

function run(file: string, args: string[], timeoutMs = 20_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

async function fixtureJson<T>(script: string, args: string[]): Promise<T> {
  const r = await run(process.execPath, [fixturePath(script), ...args]);
  assert.equal(r.code, 0, `${script} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface LoadResult {
  requests: number;
  completed: number;
  statuses: Record<string, number>;
  byPod: Record<string, number>;
  errors: Record<string, number>;
  latencyMs: { p50: number; p99: number; max: number } | null;
  headers: Record<string, string | number> | null;
  connections: number;
}
interface Echoed {
  pod: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  httpVersion: string;
  bodyLength: number;
}
interface GrpcResult {
  ok: number;
  byPod: Record<string, number>;
  codes: Record<string, number>;
  streamed: number;
  streams?: Record<'server' | 'bidi', { code: string; received: number; byPod: Record<string, number> }>;
  headers: Record<string, string> | null;
  trailers: Record<string, string> | null;
  errors: string[];
}

const load = (args: string[]) => fixtureJson<LoadResult>('http-load.mjs', args);
const grpcClient = (args: string[]) => fixtureJson<GrpcResult>('grpc-client.mjs', args);

async function curl(args: string[]): Promise<{ status: number; body: Echoed | undefined }> {
  const r = await run('curl', ['-sS', '--max-time', '5', '-w', '\n%{http_code}', ...args]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  const status = Number(lines.pop());
  return { status, body: lines.length > 0 && lines[0] !== '' ? (JSON.parse(lines.join('\n')) as Echoed) : undefined };
}

/** Writes raw bytes on a fresh connection and returns what came back before it closed. */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    let got = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => (got += chunk));
    socket.setTimeout(1_000, () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(got));
  });
}

describe('L7 test peers', () => {
  let dir: string;
  let http: string;
  let flaky: string;
  let grpc: string;
  let grpcFlaky: string;
  let httpLog: string;
  let grpcLog: string;

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'nodemesh-fixtures-'));
    httpLog = path.join(dir, 'http.jsonl');
    grpcLog = path.join(dir, 'grpc.jsonl');
    const ports = await Promise.all([
      startBackend('http-backend.mjs', ['--name', 'web-1', '--log', httpLog]),
      startBackend('http-backend.mjs', ['--name', 'web-flaky', '--fail-rate', '0.3', '--fail-status', '502']),
      startBackend('grpc-backend.mjs', ['--name', 'grpc-1', '--log', grpcLog, '--delay-ms', '20']),
      startBackend('grpc-backend.mjs', ['--name', 'grpc-flaky', '--fail-rate', '0.5']),
    ]);
    [http, flaky, grpc, grpcFlaky] = [
      `http://127.0.0.1:${ports[0]}`,
      `http://127.0.0.1:${ports[1]}`,
      `127.0.0.1:${ports[2]}`,
      `127.0.0.1:${ports[3]}`,
    ];
  });

  after(async () => {
    const exits = [...children].map((child) => new Promise((resolve) => child.once('exit', resolve)));
    children.forEach((child) => child.kill('SIGKILL'));
    await Promise.all(exits);
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('http-backend answers curl over HTTP/1.1 and h2c prior knowledge on one port', async () => {
    const h1 = await curl(['-H', 'x-probe: one', '--data-binary', 'hello', `${http}/echo?q=1`]);
    assert.equal(h1.status, 200);
    assert.deepEqual(
      { pod: h1.body?.pod, method: h1.body?.method, path: h1.body?.path, v: h1.body?.httpVersion, len: h1.body?.bodyLength, probe: h1.body?.headers['x-probe'] },
      { pod: 'web-1', method: 'POST', path: '/echo?q=1', v: '1.1', len: 5, probe: 'one' },
    );
    const h2 = await curl(['--http2-prior-knowledge', '-H', 'x-probe: two', `${http}/status/418`]);
    assert.equal(h2.status, 418);
    assert.equal(h2.body?.httpVersion, '2.0');
    assert.equal(h2.body?.headers[':authority'], http.slice('http://'.length));
    assert.equal(h2.body?.headers['x-probe'], 'two');
    const started = Date.now();
    const slow = await curl([`${http}/delay/300`]);
    assert.equal(slow.status, 200);
    assert.ok(Date.now() - started >= 300);
  });

  it('http-load keeps its connections and counts statuses, pods and latency, both protocols', async () => {
    const h1 = await load(['--url', `${http}/x`, '--requests', '60', '--concurrency', '3', '--header', 'x-a:1', '--method', 'PUT', '--body-bytes', '1000']);
    assert.deepEqual({ statuses: h1.statuses, byPod: h1.byPod, errors: h1.errors }, { statuses: { 200: 60 }, byPod: { 'web-1': 60 }, errors: {} });
    assert.ok(h1.connections <= 3, `keep-alive: ${h1.connections} connections for 60 requests`);
    assert.equal(h1.headers?.['x-pod'], 'web-1');
    assert.ok(h1.latencyMs !== null && h1.latencyMs.p50 <= h1.latencyMs.p99 && h1.latencyMs.p99 <= h1.latencyMs.max);
    const h2 = await load(['--url', `${http}/x`, '--requests', '60', '--concurrency', '6', '--http2', '--header', 'host:web.shop']);
    assert.deepEqual({ statuses: h2.statuses, byPod: h2.byPod, connections: h2.connections }, { statuses: { 200: 60 }, byPod: { 'web-1': 60 }, connections: 1 });
    assert.equal(h2.headers?.[':status'], 200);
    const log = readFileSync(httpLog, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Echoed & { name: string; at: number });
    const put = log.filter((l) => l.method === 'PUT');
    assert.equal(put.length, 60);
    assert.deepEqual({ name: put[0]?.name, v: put[0]?.httpVersion, a: put[0]?.headers['x-a'] }, { name: 'web-1', v: '1.1', a: '1' });
    assert.equal(log.filter((l) => l.httpVersion === '2.0' && l.headers[':authority'] === 'web.shop').length, 60);
  });

  it('http-load open loop paces requests and reports timeouts and refused connections as errors', async () => {
    const paced = await load(['--url', `${http}/x`, '--requests', '20', '--rps', '100', '--concurrency', '2']);
    assert.deepEqual(paced.statuses, { 200: 20 });
    const slow = await load(['--url', `${http}/delay/2000`, '--requests', '4', '--concurrency', '4', '--timeout-ms', '200', '--http2']);
    assert.deepEqual(slow.errors, { ETIMEDOUT: 4 });
    const refused = await load(['--url', 'http://127.0.0.1:1/', '--requests', '3']);
    assert.deepEqual(refused.errors, { ECONNREFUSED: 3 });
  });

  it('--fail-rate fails about that share of requests with --fail-status', async () => {
    const r = await load(['--url', `${flaky}/x`, '--requests', '400', '--concurrency', '8', '--http2']);
    const failed = r.statuses['502'] ?? 0;
    assert.equal(failed + (r.statuses['200'] ?? 0), 400);
    // 0.3 of 400 is 120 ± 9 (one sd): the band is over four sd wide on each side.
    assert.ok(failed >= 80 && failed <= 160, `${failed} of 400 failed`);
    assert.equal(r.byPod['web-flaky'], 400);
  });

  it('http-backend survives malformed HTTP/1 and HTTP/2 input', async () => {
    assert.match(await raw(Number(new URL(http).port), 'GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400/);
    await raw(Number(new URL(http).port), 'PRI * HTTP/2.0\r\n\r\nXX\r\n\r\nnot frames at all');
    await raw(Number(new URL(http).port), 'PR');
    const after = await curl([`${http}/still-here`]);
    assert.equal(after.status, 200);
  });

  it('grpc-client makes unary calls on one channel; the backend names itself and echoes metadata', async () => {
    const r = await grpcClient(['--target', grpc, '--calls', '30', '--concurrency', '5', '--metadata', 'x-tenant=blue']);
    assert.deepEqual({ ok: r.ok, byPod: r.byPod, codes: r.codes, errors: r.errors }, { ok: 30, byPod: { 'grpc-1': 30 }, codes: { OK: 30 }, errors: [] });
    assert.equal(r.headers?.['x-tenant'], 'blue');
    assert.equal(r.headers?.['x-pod'], 'grpc-1');
    assert.equal(r.trailers?.['x-tenant'], 'blue');
    const log = readFileSync(grpcLog, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { path: string; headers: Record<string, string> });
    assert.equal(log.filter((l) => l.path === '/nodemesh.test.Echo/Unary' && l.headers['x-tenant'] === 'blue').length, 30);
  });

  it('grpc-client streams: a server stream of --count and a ping-pong bidi exchange', async () => {
    const r = await grpcClient(['--target', grpc, '--calls', '0', '--stream', '--count', '7']);
    assert.deepEqual(r.streams, {
      server: { code: 'OK', received: 7, byPod: { 'grpc-1': 7 } },
      bidi: { code: 'OK', received: 7, byPod: { 'grpc-1': 7 } },
    });
    assert.equal(r.streamed, 14);
  });

  it('grpc-backend --fail-rate fails about that share with its code; deadlines and dead targets are counted, exit 0', async () => {
    const r = await grpcClient(['--target', grpcFlaky, '--calls', '200', '--concurrency', '8']);
    const failed = r.codes.UNAVAILABLE ?? 0;
    assert.equal(failed + (r.codes.OK ?? 0), 200);
    // 0.5 of 200 is 100 ± 7 (one sd).
    assert.ok(failed >= 70 && failed <= 130, `${failed} of 200 failed`);
    assert.match(r.errors[0] ?? '', /^UNAVAILABLE: grpc-flaky failed/);
    const late = await grpcClient(['--target', grpc, '--calls', '2', '--deadline-ms', '5']);
    assert.deepEqual(late.codes, { DEADLINE_EXCEEDED: 2 });
    const dead = await grpcClient(['--target', '127.0.0.1:1', '--calls', '2', '--stream', '--count', '1']);
    assert.deepEqual({ codes: dead.codes, server: dead.streams?.server.code }, { codes: { UNAVAILABLE: 2 }, server: 'UNAVAILABLE' });
  });
});
