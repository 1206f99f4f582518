// nodemesh's own metrics about the node agent: how full the BPF maps are, which configuration
// is in force, when certificates expire, what STRICT refused in the kernel, open connections,
// endpoints ejected by outlier detection.
// Read from their owners at scrape time, so they cost nothing between scrapes.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { IdentityStatus } from '../identity/cert-manager.js';
import type { RedirectStatus } from '../redirect/index.js';

export interface NodeMetricSources {
  bpf(): Pick<RedirectStatus, 'maps' | 'plaintextRefused'>;
  config(): { version: number; rejected: number };
  certs(): IdentityStatus[];
  openConnections(): { outbound: number; inbound: number };
  /** Endpoints outlier detection holds ejected now, by destination ("ns/name:port"). */
  ejections(): ReadonlyMap<string, number>;
}

/** Registers the metrics; returns the function that refreshes them before a scrape. */
export function nodeMetrics(registry: Registry, sources: NodeMetricSources): () => void {
  const registers = [registry];
  const mapEntries = new Gauge({ name: 'nodemesh_bpf_map_entries', help: 'Entries in each BPF map of the capture', labelNames: ['map'], registers });
  const mapMax = new Gauge({ name: 'nodemesh_bpf_map_max_entries', help: 'Capacity (max_entries) of each BPF map', labelNames: ['map'], registers });
  const configVersion = new Gauge({ name: 'nodemesh_config_version', help: 'Version of the configuration in force', registers });
  const rejected = new Gauge({
    name: 'nodemesh_config_rejected_resources',
    help: 'Resources rejected by the last configuration update (their last good version stays in force)',
    registers,
  });
  const certExpiry = new Gauge({
    name: 'nodemesh_certificate_expiry_seconds',
    help: 'Seconds until the certificate of each identity held on this node expires (negative once expired)',
    labelNames: ['identity'],
    registers,
  });
  const refused = new Counter({
    name: 'nodemesh_strict_plaintext_refused_total',
    help: 'Connection attempts (SYNs) to PeerAuthentication STRICT ports dropped in the kernel because they did not come from the node proxy',
    registers,
  });
  const open = new Gauge({ name: 'nodemesh_open_connections', help: 'Connections the node proxy holds open', labelNames: ['direction'], registers });
  const ejected = new Gauge({
    name: 'nodemesh_outlier_ejected_endpoints',
    help: 'Endpoints outlier detection (DestinationRule outlierDetection) holds ejected, by destination Service port',
    labelNames: ['destination_service'],
    registers,
  });

  return () => {
    const bpf = sources.bpf();
    for (const m of bpf.maps) {
      mapEntries.set({ map: m.name }, m.entries);
      mapMax.set({ map: m.name }, m.maxEntries);
    }
    // The kernel keeps the count; the counter mirrors it.
    refused.reset();
    refused.inc(bpf.plaintextRefused);
    const config = sources.config();
    configVersion.set(config.version);
    rejected.set(config.rejected);
    // Identities come and go with the pods: drop the series of those no longer held.
    certExpiry.reset();
    const now = Date.now();
    for (const c of sources.certs()) {
      if (c.notAfter) certExpiry.set({ identity: c.identity }, Math.round((new Date(c.notAfter).getTime() - now) / 1000));
    }
    const conns = sources.openConnections();
    open.set({ direction: 'outbound' }, conns.outbound);
    open.set({ direction: 'inbound' }, conns.inbound);
    ejected.reset();
    for (const [service, count] of sources.ejections()) ejected.set({ destination_service: service }, count);
  };
}
