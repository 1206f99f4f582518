// The app wiring: the one place that builds everything (config source, CA and certificates,
// eBPF capture, outbound and inbound proxies, HBONE, flow table, metrics, access log, admin
// API) and hands each piece what it needs.
import type { Logger } from 'pino';
import { AdminServer, NdjsonRoute } from './admin/server.js';
import { configDump, services, workloads } from './admin/views.js';
import { applyState, plaintextPods, workloadIdentity } from './control/apply-state.js';
import { Clusters } from './outbound/cluster.js';
import { openConfigSource, type SourceSettings } from './control/config-source.js';
import { NodemeshError } from './errors.js';
import { CertManager } from './identity/cert-manager.js';
import { identityOfPeer } from './identity/peer.js';
import { formatSpiffeId, isNodeIdentity, parseSpiffeId, principalOf } from './identity/spiffe.js';
import { HboneClient } from './hbone/client.js';
import { HboneServer } from './hbone/server.js';
import { Inbound } from './inbound/inbound.js';
import { OutboundProxy } from './outbound/outbound.js';
import { UpstreamDialer } from './outbound/upstream-dial.js';
import { L7Proxy } from './outbound/http/l7-proxy.js';
import { inboundTunnel } from './inbound/tunnel.js';
import { INBOUND_PLAINTEXT_HOST, INBOUND_PLAINTEXT_PORT, PlaintextInbound } from './inbound/plaintext.js';
import { PlaintextSteering, Redirect, cgroupId, checkPrerequisites, type RedirectStatus, type SteeringStatus } from './redirect/index.js';
import { MeshIndex } from './state/mesh-index.js';
import type { MeshState, Rejection } from './state/model.js';
import { AccessLog, type AccessLogMode } from './telemetry/access-log.js';
import { matchFlow, parseFlowFilter } from './telemetry/flow-filter.js';
import { FlowTable } from './telemetry/flow-table.js';
import { MetricsServer } from './telemetry/metrics-server.js';
import { RequestStats } from './telemetry/request-stats.js';
import { parseTapFilter, TapHub } from './telemetry/tap.js';
import { nodeMetrics } from './telemetry/node-metrics.js';
import { RequestMetrics } from './telemetry/request-metrics.js';
import { TcpMetrics } from './telemetry/tcp-metrics.js';
import type { TracingSettings } from './telemetry/tracing-settings.js';
import tls from 'node:tls';

export interface AgentSettings {
  /** A YAML file (standalone) or the controller's config stream (Kubernetes). */
  source: SourceSettings;
  node: string;
  cgroupRoot: string;
  bpffsDir: string;
  admin: { host: string; port: number };
  /** Absent (`--metrics off`): no metrics listener, no TCP, node or request metrics kept. */
  metrics?: { host: string; port: number };
  accessLog: AccessLogMode;
  /** Absent: tracing off, trace headers pass through unchanged. */
  tracing?: TracingSettings;
  logLevel: string;
  outboundPort: number;
  hbonePort: number;
  trustDomain: string;
  certLifetimeSeconds: number;
  connectTimeoutMs: number;
  /** How long the outbound listener waits for a client's first bytes to detect HTTP. */
  detectTimeoutMs: number;
  drainMs: number;
}

export interface AgentStatus {
  node: string;
  nodeIP: string | null;
  trustDomain: string;
  /** `connected`: Kubernetes mode only, whether the stream to the controller is open. */
  config: { source: string; version: number; rejections: Rejection[]; connected?: boolean };
  listeners: { outbound: string; hbone: string; metrics: string };
  enrolledPods: number;
  services: number;
  openConnections: number;
  /** L7 upstream connections kept for reuse: HTTP/1.1 connections and HTTP/2 sessions. */
  pooledUpstream: { h1: number; h2: number };
  bpf: RedirectStatus & { plaintext: SteeringStatus };
}

export interface RunningAgent {
  stop(): Promise<void>;
}

export async function startAgent(settings: Readonly<AgentSettings>, log: Logger): Promise<RunningAgent> {
  checkPrerequisites(settings.cgroupRoot);

  let index: MeshIndex | undefined;
  let apply: ((view: MeshIndex) => void) | undefined;
  const source = openConfigSource(settings.source, {
    node: settings.node,
    cgroupRoot: settings.cgroupRoot,
    trustDomain: settings.trustDomain,
    log,
    onState: (state) => {
      const next = accept(state, settings, log);
      if (!next) return;
      index = next;
      apply?.(next);
    },
    current: () => view().state,
  });
  await source.start();
  if (!index) {
    throw new NodemeshError('NM_ERR_STARTUP_NODE', `node "${settings.node}" is not a v1 Node with an InternalIP in ${source.description}`);
  }
  const view = (): MeshIndex => index as MeshIndex;

  const certs = new CertManager({
    node: settings.node,
    trustDomain: settings.trustDomain,
    lifetimeSeconds: settings.certLifetimeSeconds,
    log,
    signer: source.signer,
    ...(source.certStore && { store: source.certStore }),
  });
  const redirect = await Redirect.open({ bpffsDir: settings.bpffsDir, cgroupRoot: settings.cgroupRoot, log });
  apply = (next) => applyState(next, { redirect, certs, outboundPort: settings.outboundPort, trustDomain: settings.trustDomain }, log);
  apply(view());
  let opened: PlaintextSteering | undefined;
  try {
    opened = PlaintextSteering.open({ bpffsDir: settings.bpffsDir, listen: { host: INBOUND_PLAINTEXT_HOST, port: INBOUND_PLAINTEXT_PORT }, log });
    // The HBONE server presents the node certificate from its first connection on.
    await certs.ready(certs.nodeIdentity, settings.connectTimeoutMs);
  } catch (err) {
    source.stop();
    certs.stop();
    opened?.close();
    redirect.close();
    throw err;
  }
  const steering = opened;

  const flows = new FlowTable();
  const clusters = new Clusters();
  const metrics = settings.metrics && new MetricsServer();
  if (metrics) {
    const tcpMetrics = new TcpMetrics(metrics.registry, { index: view, trustDomain: settings.trustDomain, openFlows: () => flows.openFlows() });
    flows.observe(tcpMetrics);
    metrics.onScrape(() => tcpMetrics.collect());
    metrics.onScrape(
      nodeMetrics(metrics.registry, {
        bpf: () => redirect.status(),
        config: () => ({ version: view().state.version, rejected: view().state.rejections.length }),
        certs: () => certs.status(),
        openConnections: () => {
          const open = { outbound: 0, inbound: 0 };
          for (const f of flows.openFlows()) open[f.direction] += 1;
          return open;
        },
        ejections: () => clusters.ejections(),
      }),
    );
  }
  const accessLog = new AccessLog(settings.accessLog, { node: settings.node, index: view, trustDomain: settings.trustDomain });
  flows.observe(accessLog);
  const requestMetrics = metrics && new RequestMetrics(metrics.registry, { index: view, trustDomain: settings.trustDomain });
  const requestStats = new RequestStats({ openConnections: () => flows.openFlows() });
  const taps = new TapHub();
  // Loaded only when asked for: the SDK adds some 20 MB and 150 ms to the agent's start.
  const tracing = settings.tracing && new (await import('./telemetry/tracing.js')).Tracing(settings.tracing, { node: settings.node, log });
  // Every request record, from both reporters (the L7 proxy at the source, the inbound filters
  // at the destination), goes to metrics (unless off), the access log, top, tap and (as the
  // destination's SERVER spans) tracing.
  const observers = [...(requestMetrics ? [requestMetrics] : []), accessLog, requestStats, taps, ...(tracing ? [tracing] : [])];
  const inbound = new Inbound({ index: view, connectTimeoutMs: settings.connectTimeoutMs, detectTimeoutMs: settings.detectTimeoutMs, log, observers });
  const hboneClient = new HboneClient({
    credentials: (identity) => certs.credentials(identity),
    verifyServer: (nodeName, cert) => verifyNode(nodeName, cert, settings.trustDomain),
    connectTimeoutMs: settings.connectTimeoutMs,
    log,
  });
  const hboneServer = new HboneServer({
    credentials: () => {
      const c = certs.nodeCredentials();
      if (!c) throw new NodemeshError('NM_ERR_IDENTITY_NOT_READY', 'the node certificate is not available yet');
      return c;
    },
    peerIdentity: (cert) => {
      const id = identityOfPeer(cert, settings.trustDomain);
      return 'reason' in id ? id : formatSpiffeId(id);
    },
    open: inboundTunnel(inbound, flows),
    connectTimeoutMs: settings.connectTimeoutMs,
    log,
  });
  const dialer = new UpstreamDialer({
    hbonePort: settings.hbonePort,
    connectTimeoutMs: settings.connectTimeoutMs,
    identityOf: (pod) => {
      const spiffe = workloadIdentity(pod, settings.trustDomain);
      return { spiffe, principal: principalOf(parseSpiffeId(spiffe)) };
    },
    inbound,
    tunnels: {
      // A pod that just appeared may still be waiting for its first certificate.
      connect: async (req) => {
        if (!certs.credentials(req.sourceIdentity)) await certs.ready(req.sourceIdentity, settings.connectTimeoutMs);
        return hboneClient.connect(req);
      },
    },
  });
  const l7 = new L7Proxy({ index: view, dialer, clusters, log, observers, ...(tracing ? { tracing } : {}) });
  const plaintext = new PlaintextInbound({ steering, inbound, flows, index: view, detectTimeoutMs: settings.detectTimeoutMs, log });
  plaintext.update(plaintextPods(view()));
  const applyMaps = apply;
  apply = (next) => {
    applyMaps(next);
    l7.update(next);
    clusters.retain(next);
    plaintext.update(plaintextPods(next));
    inbound.recheck();
  };
  const outbound = new OutboundProxy(
    { detectTimeoutMs: settings.detectTimeoutMs },
    { lookupOrigin: (ip, port) => redirect.lookupOrigin(ip, port), index: view, dialer, l7, clusters, flows, log },
  );
  const admin = new AdminServer({
    '/ready': () => ({ ready: true }),
    '/status': (): AgentStatus => ({
      node: settings.node,
      nodeIP: view().node?.internalIP ?? null,
      trustDomain: settings.trustDomain,
      config: {
        source: source.description,
        version: view().state.version,
        rejections: [...view().state.rejections],
        ...(source.connected() !== undefined && { connected: source.connected() as boolean }),
      },
      listeners: { outbound: outbound.address, hbone: hboneServer.address, metrics: metrics?.address ?? 'off' },
      enrolledPods: view().localPods.size,
      services: view().state.services.size,
      openConnections: flows.openCount,
      pooledUpstream: l7.pooled(),
      bpf: { ...redirect.status(), plaintext: steering.status() },
    }),
    '/flows': (query) => {
      const filter = parseFlowFilter(query);
      return flows.rows(redirect.flows(), view()).filter((row) => matchFlow(row, filter));
    },
    '/top': (query) => requestStats.snapshot(query.get('namespace') ? { namespace: query.get('namespace') as string } : {}),
    '/tap': new NdjsonRoute((query, send) => taps.subscribe(parseTapFilter(query), send)),
    '/certs': () => certs.status(),
    '/workloads': () => workloads(view(), settings.trustDomain),
    '/services': () => services(view()),
    '/config_dump': () => configDump(view(), source.description),
  });

  const stop = async () => {
    source.stop();
    await Promise.all([outbound.close(settings.drainMs), hboneServer.close(settings.drainMs), plaintext.close(settings.drainMs), admin.close(), metrics?.close()]);
    l7.close();
    clusters.close();
    await Promise.all([hboneClient.close(), accessLog.flush(), tracing?.shutdown()]);
    certs.stop();
    // The plaintext listeners are closed and sk_lookup leaves the pods' netns: their plaintext
    // reaches them directly (PERMISSIVE) or is refused (a pod with a policy) until the next start.
    steering.close();
    // Pins and attachments stay: enrolled pods remain captured (and refused) until the next
    // start replaces them or `nodemesh agent --cleanup` removes them.
    redirect.close();
  };
  try {
    // Wildcard addresses keep the listeners valid when the node's InternalIP changes in the
    // configuration; connections that connect4 did not redirect find no record and are reset.
    await outbound.listen('0.0.0.0', settings.outboundPort);
    await hboneServer.listen('0.0.0.0', settings.hbonePort);
    await admin.listen(settings.admin);
    if (metrics && settings.metrics) await metrics.listen(settings.metrics);
  } catch (err) {
    await stop();
    throw err;
  }
  log.info(
    {
      outbound: outbound.address,
      hbone: hboneServer.address,
      admin: `${settings.admin.host}:${settings.admin.port}`,
      metrics: metrics?.address ?? 'off',
      accessLog: settings.accessLog,
      tracing: settings.tracing ?? 'off',
      cgroupRoot: settings.cgroupRoot,
    },
    'agent ready',
  );
  return { stop };
}

function accept(state: MeshState, settings: Readonly<AgentSettings>, log: Logger): MeshIndex | undefined {
  const next = new MeshIndex(state, settings.node, (path) => cgroupIdOr(path, log));
  if (!next.node) {
    log.error(
      { nodes: [...state.nodes.keys()] },
      `configuration has no v1 Node "${settings.node}"; keeping the last good configuration`,
    );
    return undefined;
  }
  return next;
}

/** The HBONE server must be the named node's proxy: its DNS SAN and our node identity. */
function verifyNode(nodeName: string, cert: tls.PeerCertificate, trustDomain: string): true | string {
  const hostError = tls.checkServerIdentity(nodeName, cert);
  if (hostError) return hostError.message;
  const id = identityOfPeer(cert, trustDomain);
  if ('reason' in id) return id.reason;
  return isNodeIdentity(id) ? true : `${formatSpiffeId(id)} is not a node proxy identity`;
}

function cgroupIdOr(path: string, log: Logger): bigint | undefined {
  try {
    return cgroupId(path);
  } catch (err) {
    log.warn({ cgroup: path, err: (err as Error).message }, 'pod cgroup not found; pod not captured');
    return undefined;
  }
}
