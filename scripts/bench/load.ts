// Load generators run in the client pod: the open-loop fixture for latency at a fixed rate,
// wrk (HTTP/1.1) and h2load (HTTP/2 prior knowledge) at saturation for throughput. Each run
// is bounded in time and its output parsed into numbers, or it fails with what it printed.
import { fixturePath, type Testbed } from '../testbed/testbed.js';

export type Protocol = 'h1' | 'h2';

/** HTTP/1.1 keep-alive sockets of the open-loop client (HTTP/2 uses one connection). */
export const OPEN_LOOP_CONNECTIONS = 16;
/** wrk: connections, one thread. */
export const WRK_CONNECTIONS = 32;
/** h2load: connections × concurrent streams on each. */
export const H2LOAD_CONNECTIONS = 4;
export const H2LOAD_STREAMS = 32;

export interface OpenLoop {
  requests: number;
  ok: number;
  /** Transport errors, timeouts and answers other than 2xx. */
  errors: number;
  p50: number;
  p99: number;
  max: number;
}

export interface Saturation {
  requests: number;
  rps: number;
  errors: number;
}

interface LoadOutput {
  requests: number;
  statuses: Record<string, number>;
  errors: Record<string, number>;
  latencyMs: { p50: number; p99: number; max: number } | null;
}

/** `rate` requests/s for `seconds`, latency counted from each request's scheduled start. */
export async function openLoop(tb: Testbed, url: string, protocol: Protocol, rate: number, seconds: number): Promise<OpenLoop> {
  const requests = rate * seconds;
  const maxMs = (seconds + 10) * 1000;
  const argv = [
    process.execPath,
    fixturePath('http-load.mjs'),
    '--url', url,
    '--requests', String(requests),
    '--rps', String(rate),
    '--concurrency', String(OPEN_LOOP_CONNECTIONS),
    '--timeout-ms', '5000',
    '--max-ms', String(maxMs),
    ...(protocol === 'h2' ? ['--http2'] : []),
  ];
  const r = await tb.exec({ pod: 'client' }, argv, { timeoutMs: maxMs + 5000 });
  if (r.code !== 0) throw new Error(`open-loop client (${protocol}, ${url}) failed (${r.code}): ${r.stderr || r.stdout}`);
  const out = JSON.parse(r.stdout) as LoadOutput;
  const ok = Object.entries(out.statuses).reduce((n, [status, count]) => (status.startsWith('2') ? n + count : n), 0);
  if (out.latencyMs === null) throw new Error(`open-loop client (${protocol}, ${url}) got no answer: ${r.stdout}`);
  return { requests: out.requests, ok, errors: out.requests - ok, ...out.latencyMs };
}

/** Closed loop as fast as the path answers: wrk for HTTP/1.1, h2load for HTTP/2. */
export async function saturate(tb: Testbed, url: string, protocol: Protocol, seconds: number): Promise<Saturation> {
  const argv =
    protocol === 'h1'
      ? ['wrk', '-t1', `-c${WRK_CONNECTIONS}`, `-d${seconds}s`, url]
      : ['h2load', '-t1', `-c${H2LOAD_CONNECTIONS}`, `-m${H2LOAD_STREAMS}`, `-D${seconds}`, url];
  const r = await tb.exec({ pod: 'client' }, argv, { timeoutMs: (seconds + 20) * 1000 });
  const parsed = r.code === 0 ? (protocol === 'h1' ? parseWrk(r.stdout) : parseH2load(r.stdout)) : undefined;
  if (parsed === undefined) throw new Error(`${argv[0]} (${url}) failed (${r.code}): ${r.stderr || r.stdout}`);
  return parsed;
}

function parseWrk(out: string): Saturation | undefined {
  const requests = /(\d+) requests in/.exec(out)?.[1];
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1];
  if (requests === undefined || rps === undefined) return undefined;
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const socketErrors = socket === null ? 0 : socket.slice(1).reduce((n, v) => n + Number(v), 0);
  return { requests: Number(requests), rps: Number(rps), errors: non2xx + socketErrors };
}

/** h2load counts as failed every request without a 2xx/3xx answer, stream errors included. */
function parseH2load(out: string): Saturation | undefined {
  const rps = /finished in [\d.]+\w*, ([\d.]+) req\/s/.exec(out)?.[1];
  const counts = /requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed/.exec(out);
  if (rps === undefined || counts === null) return undefined;
  return { requests: Number(counts[1]), rps: Number(rps), errors: Number(counts[2]) };
}
