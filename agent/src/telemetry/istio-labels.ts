// The labels every Istio standard metric shares (reporter, source and destination workload,
// principal, canonical service and revision, cluster, destination service) and their values,
// built once for the TCP and the request metrics so both name the same peers the same way.
import type { Security } from '../state/outcome.js';
import { serviceFqdn, type FlowPeers, type Peer } from './peers.js';

export type Reporter = 'source' | 'destination';

const UNKNOWN = 'unknown';
/** Istio's default cluster id; nodemesh runs one cluster and has no setting for it yet. */
const CLUSTER = 'Kubernetes';

const PEER_FIELDS = ['workload', 'workload_namespace', 'principal', 'app', 'version', 'canonical_service', 'canonical_revision', 'cluster'] as const;
type PeerField = (typeof PEER_FIELDS)[number];

/** In the order Istio's tables list them; metrics append their own labels after these. */
export const PEER_LABELS = [
  'reporter',
  ...PEER_FIELDS.map((f) => `source_${f}` as const),
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  ...PEER_FIELDS.map((f) => `destination_${f}` as const),
] as const;

export type PeerLabels = Record<(typeof PEER_LABELS)[number], string>;

export function peerLabels(reporter: Reporter, { source, destination, service }: FlowPeers): PeerLabels {
  return {
    reporter,
    ...sideLabels('source', source),
    destination_service: service ? serviceFqdn(service) : UNKNOWN,
    destination_service_name: service?.name ?? UNKNOWN,
    destination_service_namespace: service?.namespace ?? UNKNOWN,
    ...sideLabels('destination', destination),
  };
}

/** ztunnel's label values: app and version are the canonical service and revision. */
function sideLabels<P extends 'source' | 'destination'>(prefix: P, peer: Peer) {
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
  } as Record<`${P}_${PeerField}`, string>;
}

/**
 * node_local is what ztunnel reports for a same-node connection: it goes through ztunnel's own
 * HBONE inbound, so mutual_tls. Ours is vouched for by the kernel instead of a handshake; the
 * guarantee (the source identity is verified, the bytes never leave the node) is the same.
 */
export function securityPolicy(security: Security): string {
  return security === 'none' ? 'none' : 'mutual_tls';
}
