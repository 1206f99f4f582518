// The node's flow table for `nodemesh flows`: the kernel's per-connection records (sockops
// counters, open/closed) joined with what the proxy decided for each connection (service,
// endpoint, response flags). Either side alone still yields a row.
import type { FlowRecord } from '../redirect/index.js';
import type { Endpoint, MeshIndex } from '../state/mesh-index.js';
import { podName } from '../state/mesh-index.js';
import type { Authorization, ResponseFlag, Security } from '../state/outcome.js';

/** The endpoint a connection went to; an external one (an EndpointSlice address outside the
 * mesh) has no pod and no node. */
export interface FlowEndpoint {
  ip: string;
  port: number;
  pod: string | null;
  node: string | null;
}

export const flowEndpoint = (e: Endpoint): FlowEndpoint =>
  e.kind === 'pod' ? { ip: e.ip, port: e.port, pod: podName(e.pod), node: e.nodeName } : { ip: e.ip, port: e.port, pod: null, node: null };

/** What the proxy did with one connection. */
export interface ProxyFlow {
  direction: 'outbound' | 'inbound';
  cookie?: bigint;
  sourceIP: string;
  sourcePort: number;
  sourcePod?: string;
  /** The verified SPIFFE id of the source (inbound over HBONE). */
  sourceIdentity?: string;
  dstIP: string;
  dstPort: number;
  service?: string;
  dstPod?: string;
  endpoint?: FlowEndpoint;
  startMs: number;
  endMs?: number;
  bytesSent: number;
  bytesReceived: number;
  responseFlags: ResponseFlag;
  security: Security;
  /** Set once the destination's policy has decided. */
  authorization?: Authorization;
  /** Bytes moved so far, set by the proxy once the connection relays: lets metrics show the
   * progress of long connections before they close. */
  live?: () => { sent: number; received: number };
}

/** Told of every connection as it closes (metrics, access log). */
export interface FlowObserver {
  closed(flow: ProxyFlow): void;
}

export interface FlowRow {
  direction: 'outbound' | 'inbound';
  source: { pod: string | null; ip: string; port: number; identity?: string };
  destination: { ip: string; port: number; service: string | null; pod: string | null };
  endpoint: FlowEndpoint | null;
  protocol: 'tcp';
  bytesSent: number;
  bytesReceived: number;
  packetsSent: number | null;
  packetsReceived: number | null;
  state: 'open' | 'closed';
  startTime: string;
  durationMs: number;
  responseFlags: ResponseFlag;
  security: Security | null;
  authorization: Authorization | null;
}

const CLOSED_KEPT = 4096;

export class FlowTable {
  readonly #open = new Set<ProxyFlow>();
  readonly #closed: ProxyFlow[] = [];
  readonly #observers: FlowObserver[] = [];

  observe(observer: FlowObserver): void {
    this.#observers.push(observer);
  }

  open(flow: ProxyFlow): ProxyFlow {
    this.#open.add(flow);
    return flow;
  }

  close(flow: ProxyFlow): void {
    if (!this.#open.delete(flow)) return;
    flow.endMs ??= Date.now();
    // Kept flows must not hold on to their sockets.
    delete flow.live;
    this.#closed.push(flow);
    if (this.#closed.length > CLOSED_KEPT) this.#closed.shift();
    for (const o of this.#observers) o.closed(flow);
  }

  get openCount(): number {
    return this.#open.size;
  }

  openFlows(): IterableIterator<ProxyFlow> {
    return this.#open.values();
  }

  /** Newest first. */
  rows(kernel: readonly FlowRecord[], index: MeshIndex, now = Date.now()): FlowRow[] {
    const byCookie = new Map<bigint, ProxyFlow>();
    for (const f of [...this.#closed, ...this.#open]) if (f.cookie !== undefined) byCookie.set(f.cookie, f);
    const rows: FlowRow[] = [];
    for (const k of kernel) {
      const p = byCookie.get(k.cookie);
      byCookie.delete(k.cookie);
      rows.push(kernelRow(k, p, index, now));
    }
    for (const p of [...this.#open, ...this.#closed]) {
      if (p.cookie === undefined || byCookie.has(p.cookie)) rows.push(proxyRow(p, now));
    }
    return rows.sort((a, b) => b.startTime.localeCompare(a.startTime));
  }
}

function kernelRow(k: FlowRecord, p: ProxyFlow | undefined, index: MeshIndex, now: number): FlowRow {
  const local = index.localPods.get(k.cgroupId);
  const dest = index.destination(k.dstIP, k.dstPort);
  const end = k.open ? now : (k.endMs ?? p?.endMs ?? now);
  return {
    direction: 'outbound',
    source: { pod: p?.sourcePod ?? (local ? podName(local.pod) : null), ip: k.ip, port: k.port },
    destination: {
      ip: k.dstIP,
      port: k.dstPort,
      service: p?.service ?? (dest?.kind === 'service' ? `${dest.service.namespace}/${dest.service.name}` : null),
      pod: p?.dstPod ?? (dest?.kind === 'pod' ? podName(dest.pod) : null),
    },
    endpoint: p?.endpoint ?? null,
    protocol: 'tcp',
    bytesSent: k.bytesSent,
    bytesReceived: k.bytesReceived,
    packetsSent: k.packetsSent,
    packetsReceived: k.packetsReceived,
    state: k.open ? 'open' : 'closed',
    startTime: new Date(k.startMs).toISOString(),
    durationMs: Math.max(0, Math.round(end - k.startMs)),
    responseFlags: p?.responseFlags ?? '-',
    security: p?.security ?? null,
    authorization: p?.authorization ?? null,
  };
}

function proxyRow(p: ProxyFlow, now: number): FlowRow {
  // An open connection shows the bytes moved so far, as the kernel's rows do.
  const live = p.endMs === undefined ? p.live?.() : undefined;
  return {
    direction: p.direction,
    source: { pod: p.sourcePod ?? null, ip: p.sourceIP, port: p.sourcePort, ...(p.sourceIdentity ? { identity: p.sourceIdentity } : {}) },
    destination: { ip: p.dstIP, port: p.dstPort, service: p.service ?? null, pod: p.dstPod ?? null },
    endpoint: p.endpoint ?? null,
    protocol: 'tcp',
    bytesSent: live?.sent ?? p.bytesSent,
    bytesReceived: live?.received ?? p.bytesReceived,
    packetsSent: null,
    packetsReceived: null,
    state: p.endMs === undefined ? 'open' : 'closed',
    startTime: new Date(p.startMs).toISOString(),
    durationMs: Math.max(0, Math.round((p.endMs ?? now) - p.startMs)),
    responseFlags: p.responseFlags,
    security: p.security,
    authorization: p.authorization ?? null,
  };
}
