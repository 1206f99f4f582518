// The access log: one JSON line (`type: "access"`) per TCP connection as it closes, to stdout
// where the node's log collector already reads the agent's own lines. Written through pino's
// asynchronous destination: a slow reader delays lines, never the connections.
import type { Writable } from 'node:stream';
import { destination as pinoDestination, pino, type Logger } from 'pino';
import { NodemeshError } from '../errors.js';
import type { MeshIndex } from '../state/mesh-index.js';
import type { FlowObserver, ProxyFlow } from './flow-table.js';
import { flowPeers, serviceFqdn, type Peer } from './peers.js';
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

export class AccessLog implements FlowObserver {
  readonly #mode: AccessLogMode;
  readonly #deps: AccessLogDeps;
  readonly #log: Logger;

  constructor(mode: AccessLogMode, deps: AccessLogDeps) {
    this.#mode = mode;
    this.#deps = deps;
    const destination = deps.destination ?? pinoDestination({ dest: 1, sync: false, maxLength: MAX_BUFFERED_BYTES });
    this.#log = pino({ base: { node: deps.node, type: 'access' } }, destination);
  }

  closed(flow: ProxyFlow): void {
    if (!this.#wanted(flow)) return;
    this.#log.info(this.#fields(flow), 'connection closed');
  }

  /** Writes what is buffered; pino also does so when the process exits. */
  flush(): Promise<void> {
    return new Promise((resolve) => this.#log.flush(() => resolve()));
  }

  /** Sampling thins successful connections only: a failed one is always worth its line. */
  #wanted(flow: ProxyFlow): boolean {
    const m = this.#mode;
    if (m.kind !== 'sampled') return m.kind === 'all';
    return responseFlags(flow) !== '-' || (this.#deps.random ?? Math.random)() < m.ratio;
  }

  #fields(flow: ProxyFlow) {
    const { source, destination, service } = flowPeers(flow, this.#deps.index(), this.#deps.trustDomain);
    const a = flow.authorization;
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
      authorization: a ? { decision: a.allowed ? 'allow' : 'deny', reason: a.reason, ...(a.policy ? { policy: a.policy } : {}) } : null,
      security: flow.security,
    };
  }
}

const peer = (p: Peer) => ({
  workload: p.workload?.name ?? null,
  pod: p.workload?.pod ?? null,
  namespace: p.namespace ?? null,
  identity: p.principal ?? null,
});
