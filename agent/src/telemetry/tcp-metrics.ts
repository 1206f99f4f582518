// Istio's standard TCP metrics (istio_tcp_*) with Istio's names, labels and values, so Istio
// dashboards and Kiali read nodemesh unchanged. One series per (reporter, source workload,
// destination workload/service, flags, security): no addresses, ports or paths as labels.
import { Counter, type Registry } from 'prom-client';
import type { MeshIndex } from '../state/mesh-index.js';
import type { FlowObserver, ProxyFlow } from './flow-table.js';
import { flowPeers, serviceFqdn, type Peer } from './peers.js';

export type Reporter = 'source' | 'destination';

const UNKNOWN = 'unknown';
/** Istio's default cluster id; nodemesh runs one cluster and has no setting for it yet. */
const CLUSTER = 'Kubernetes';

const LABELS = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_canonical_service',
  'source_canonical_revision',
  'source_cluster',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_cluster',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;

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
  const { source, destination, service } = flowPeers(flow, view, trustDomain);
  return {
    reporter,
    ...peerLabels('source', source),
    destination_service: service ? serviceFqdn(service) : UNKNOWN,
    destination_service_name: service?.name ?? UNKNOWN,
    destination_service_namespace: service?.namespace ?? UNKNOWN,
    ...peerLabels('destination', destination),
    request_protocol: 'tcp',
    response_flags: responseFlags(flow),
    connection_security_policy: securityPolicy(flow),
  };
}

/** ztunnel's label values: app and version are the canonical service and revision. */
function peerLabels<P extends 'source' | 'destination'>(prefix: P, peer: Peer) {
  const w = peer.workload;
  return {
    [`${prefix}_workload`]: w?.name ?? UNKNOWN,
    [`${prefix}_workload_namespace`]: peer.namespace ?? UNKNOWN,
    [`${prefix}_principal`]: peer.principal ?? UNKNOWN,
    [`${prefix}_app`]: w?.canonicalService ?? UNKNOWN,
    [`${prefix}_version`]: w?.canonicalRevision ?? UNKNOWN,
    [`${prefix}_canonical_service`]: w?.canonicalService ?? UNKNOWN,
    [`${prefix}_canonical_revision`]: w?.canonicalRevision ?? UNKNOWN,
    [`${prefix}_cluster`]: CLUSTER,
  } as Record<`${P}_${'workload' | 'workload_namespace' | 'principal' | 'app' | 'version' | 'canonical_service' | 'canonical_revision' | 'cluster'}`, string>;
}

/** Envoy's flags as in `nodemesh flows`, plus ztunnel's DENY for a connection policy refused
 * (the flow table keeps '-' there and names the policy), so dashboards count it as failed. */
export function responseFlags(flow: ProxyFlow): string {
  return flow.authorization?.allowed === false ? 'DENY' : flow.responseFlags;
}

/**
 * node_local is what ztunnel reports for a same-node connection: it goes through ztunnel's own
 * HBONE inbound, so mutual_tls. Ours is vouched for by the kernel instead of a handshake; the
 * guarantee (the source identity is verified, the bytes never leave the node) is the same.
 */
function securityPolicy(flow: ProxyFlow): string {
  return flow.security === 'none' ? 'none' : 'mutual_tls';
}
