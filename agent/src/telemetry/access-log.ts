// The access log: one JSON line per TCP connection as it closes (`type: "access"`) and per HTTP
// request as it ends (`type: "request"`), to stdout where the node's log collector already
// reads the agent's own lines. Written through pino's asynchronous destination: a slow reader
// delays lines, never the connections or requests.
import type { Writable } from 'node:stream';
import { destination as pinoDestination, pino, type Logger } from 'pino';
import { NodemeshError } from '../errors.js';
import type { MeshIndex } from '../state/mesh-index.js';
import type { FlowObserver, ProxyFlow } from './flow-table.js';
import type { Authorization } from '../state/outcome.js';
import { flowPeers, requestPeers, serviceFqdn, type Peer } from './peers.js';
import { requestSummary, type RequestObserver, type RequestRecord } from './request-record.js';
import { responseFlags } from './tcp-metrics.js';

export type AccessLogMode = { kind: 'off' } | { kind: 'all' } | { kind: 'sampled'; ratio: number };

// Past this much unwritten log (a stuck stdout reader), lines are dropped rather than held.
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024;

export function parseAccessLogMode(value: string): AccessLogMode {
  if (value === 'off' || value === 'all') return { kind: value };
  const m = /^sampled:(.+)$/.exec(value);
  const ratio = m ? Number(m[1]) : NaN;
  if (!(ratio > 0 && ratio <= 1)) {
    throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--access-log must be off, all or sampled:<ratio> with 0 < ratio <= 1 (e.g. sampled:0.1), got "${value}"`);
  }
  return { kind: 'sampled', ratio };
}

export interface AccessLogDeps {
  node: string;
  index(): MeshIndex;
  trustDomain: string;
  /** Where lines go; stdout through pino's asynchronous destination by default. */
  destination?: Writable;
  random?: () => number;
}

export class AccessLog implements FlowObserver, RequestObserver {
  readonly #mode: AccessLogMode;
  readonly #deps: AccessLogDeps;
  readonly #log: Logger;
  readonly #connections: Logger;
  readonly #requests: Logger;

  constructor(mode: AccessLogMode, deps: AccessLogDeps) {
    this.#mode = mode;
    this.#deps = deps;
    const destination = deps.destination ?? pinoDestination({ dest: 1, sync: false, maxLength: MAX_BUFFERED_BYTES });
    this.#log = pino({ base: { node: deps.node } }, destination);
    this.#connections = this.#log.child({ type: 'access' });
    this.#requests = this.#log.child({ type: 'request' });
  }

  closed(flow: ProxyFlow): void {
    if (!this.#wanted(responseFlags(flow) !== '-')) return;
    this.#connections.info(this.#fields(flow), 'connection closed');
  }

  request(record: RequestRecord): void {
    if (!this.#wanted(failed(record))) return;
    this.#requests.info(this.#requestFields(record), 'request');
  }

  /** Writes what is buffered; pino also does so when the process exits. */
  flush(): Promise<void> {
    return new Promise((resolve) => this.#log.flush(() => resolve()));
  }

  /** Sampling thins successful connections and requests only: a failure is always worth its line. */
  #wanted(failure: boolean): boolean {
    const m = this.#mode;
    if (m.kind !== 'sampled') return m.kind === 'all';
    return failure || (this.#deps.random ?? Math.random)() < m.ratio;
  }

  #fields(flow: ProxyFlow) {
    const { source, destination, service } = flowPeers(flow, this.#deps.index(), this.#deps.trustDomain);
    return {
      direction: flow.direction,
      src: { addr: flow.sourcePort ? `${flow.sourceIP}:${flow.sourcePort}` : flow.sourceIP, ...peer(source) },
      dst: { addr: `${flow.dstIP}:${flow.dstPort}`, service: service ? serviceFqdn(service) : null, ...peer(destination) },
      endpoint: flow.endpoint ? { addr: `${flow.endpoint.ip}:${flow.endpoint.port}`, node: flow.endpoint.node } : null,
      protocol: 'tcp',
      responseFlags: responseFlags(flow),
      // From the source's side, as in `nodemesh flows`: sent = what the client sent.
      bytesSent: flow.bytesSent,
      bytesReceived: flow.bytesReceived,
      durationMs: Math.max(0, Math.round((flow.endMs ?? Date.now()) - flow.startMs)),
      authorization: decision(flow.authorization),
      security: flow.security,
    };
  }

  #requestFields(r: RequestRecord) {
    const { source, destination, service } = requestPeers(r, this.#deps.index(), this.#deps.trustDomain);
    const ep = r.destination.endpoint;
    return {
      reporter: r.reporter,
      src: { addr: r.source.ip, ...peer(source) },
      dst: { service: service ? serviceFqdn(service) : null, port: r.destination.service?.port ?? null, ...peer(destination) },
      route: r.route ?? null,
      endpoint: ep ? { addr: `${ep.ip}:${ep.port}`, node: ep.kind === 'pod' ? ep.nodeName : null } : null,
      ...requestSummary(r),
      responseFlags: r.responseFlags,
      requestBytes: r.requestBytes,
      responseBytes: r.responseBytes,
      // Microseconds matter on a node-local hop.
      durationMs: Math.round(r.durationMs * 1000) / 1000,
      retries: r.retries,
      requestId: r.requestId ?? null,
      traceId: r.traceId ?? null,
      authorization: decision(r.authorization),
      security: r.security,
    };
  }
}

/** A request failed when the proxy flagged it, no answer or a 5xx went out, gRPC said so, or a
 * policy denied it. */
function failed(r: RequestRecord): boolean {
  return r.responseFlags !== '-' || r.status === 0 || r.status >= 500 || (r.grpcStatus ?? 0) !== 0 || r.authorization?.allowed === false;
}

const decision = (a: Authorization | undefined) =>
  a ? { decision: a.allowed ? 'allow' : 'deny', reason: a.reason, ...(a.policy ? { policy: a.policy } : {}) } : null;

const peer = (p: Peer) => ({
  workload: p.workload?.name ?? null,
  pod: p.workload?.pod ?? null,
  namespace: p.namespace ?? null,
  identity: p.principal ?? null,
});
