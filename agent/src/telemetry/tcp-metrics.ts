// Istio's standard TCP metrics (istio_tcp_*) with Istio's names, labels and values, so Istio
// dashboards and Kiali read nodemesh unchanged. One series per (reporter, source workload,
// destination workload/service, flags, security): no addresses, ports or paths as labels.
import { Counter, type Registry } from 'prom-client';
import type { MeshIndex } from '../state/mesh-index.js';
import type { FlowObserver, ProxyFlow } from './flow-table.js';
import { PEER_LABELS, peerLabels, securityPolicy, type Reporter } from './istio-labels.js';
import { flowPeers } from './peers.js';

const LABELS = [...PEER_LABELS, 'request_protocol', 'response_flags', 'connection_security_policy'] as const;

export type TcpLabels = Record<(typeof LABELS)[number], string>;

interface Tracked {
  labels: TcpLabels[];
  sent: number;
  received: number;
}

export interface TcpMetricsDeps {
  index(): MeshIndex;
  trustDomain: string;
  openFlows(): Iterable<ProxyFlow>;
}

export class TcpMetrics implements FlowObserver {
  readonly #deps: TcpMetricsDeps;
  readonly #opened: Counter<keyof TcpLabels>;
  readonly #closed: Counter<keyof TcpLabels>;
  readonly #sent: Counter<keyof TcpLabels>;
  readonly #received: Counter<keyof TcpLabels>;
  readonly #tracked = new WeakMap<ProxyFlow, Tracked>();

  constructor(registry: Registry, deps: TcpMetricsDeps) {
    this.#deps = deps;
    const counter = (name: string, help: string) => new Counter({ name, help, labelNames: LABELS, registers: [registry] });
    this.#opened = counter('istio_tcp_connections_opened_total', 'The total number of TCP connections opened');
    this.#closed = counter('istio_tcp_connections_closed_total', 'The total number of TCP connections closed');
    // Istio's direction: "received" is what the client sent (request), "sent" what it got back.
    this.#received = counter('istio_tcp_received_bytes_total', 'The size of total bytes received during request in case of a TCP connection');
    this.#sent = counter('istio_tcp_sent_bytes_total', 'The size of total bytes sent during response in case of a TCP connection');
  }

  /**
   * Before each scrape: counts as opened the connections that relay and adds the bytes they
   * moved since the last scrape, so a dashboard sees long connections progress (ztunnel adds
   * bytes as they flow; per scrape costs nothing between scrapes). A connection still being
   * set up waits: its destination and flags are not final yet.
   */
  collect(): void {
    for (const flow of this.#deps.openFlows()) {
      const ready = flow.direction === 'inbound' || flow.live !== undefined;
      const live = flow.live?.();
      if (ready) this.#add(this.#track(flow), live?.sent ?? 0, live?.received ?? 0);
    }
  }

  closed(flow: ProxyFlow): void {
    const t = this.#track(flow);
    this.#add(t, flow.bytesSent, flow.bytesReceived);
    for (const l of t.labels) this.#closed.inc(l);
    this.#tracked.delete(flow);
  }

  /** Labels are fixed at the first report, so opened, bytes and closed of one connection agree. */
  #track(flow: ProxyFlow): Tracked {
    let t = this.#tracked.get(flow);
    if (!t) {
      // A same-node connection passes this node's inbound checks in-process; ztunnel would
      // report it from its inbound too, so it counts for both reporters.
      const reporters: Reporter[] =
        flow.direction === 'inbound' ? ['destination'] : flow.security === 'node_local' ? ['source', 'destination'] : ['source'];
      const labels = reporters.map((r) => tcpLabels(flow, r, this.#deps.index(), this.#deps.trustDomain));
      t = { labels, sent: 0, received: 0 };
      this.#tracked.set(flow, t);
      for (const l of labels) this.#opened.inc(l);
    }
    return t;
  }

  /** Counters never go back: a live reading above the final count adds nothing more. */
  #add(t: Tracked, sent: number, received: number): void {
    const ds = Math.max(0, sent - t.sent);
    const dr = Math.max(0, received - t.received);
    t.sent += ds;
    t.received += dr;
    for (const l of t.labels) {
      if (ds > 0) this.#received.inc(l, ds);
      if (dr > 0) this.#sent.inc(l, dr);
    }
  }
}

export function tcpLabels(flow: ProxyFlow, reporter: Reporter, view: MeshIndex, trustDomain: string): TcpLabels {
  return {
    ...peerLabels(reporter, flowPeers(flow, view, trustDomain)),
    request_protocol: 'tcp',
    response_flags: responseFlags(flow),
    connection_security_policy: securityPolicy(flow.security),
  };
}

/** Envoy's flags as in `nodemesh flows`, plus ztunnel's DENY for a connection policy refused
 * (the flow table keeps '-' there and names the policy), so dashboards count it as failed. */
export function responseFlags(flow: ProxyFlow): string {
  return flow.authorization?.allowed === false ? 'DENY' : flow.responseFlags;
}
