// The app wiring: the one place that builds everything (config source, eBPF capture, node
// proxy, flow table, admin API) and hands each piece what it needs.
import type { Logger } from 'pino';
import { AdminServer } from './admin/server.js';
import { RoundRobin } from './balance/round-robin.js';
import { FileSource } from './control/file-source.js';
import { NodemeshError } from './errors.js';
import { OutboundProxy } from './proxy/outbound.js';
import { Redirect, cgroupId, checkPrerequisites } from './redirect/index.js';
import { MeshIndex } from './state/mesh-index.js';
import type { MeshState, Rejection } from './state/model.js';
import { FlowTable } from './telemetry/flow-table.js';

export interface AgentSettings {
  configPath: string;
  node: string;
  cgroupRoot: string;
  bpffsDir: string;
  admin: { host: string; port: number };
  logLevel: string;
  outboundPort: number;
  connectTimeoutMs: number;
  drainMs: number;
}

export interface AgentStatus {
  node: string;
  nodeIP: string | null;
  config: { source: string; version: number; rejections: Rejection[] };
  outbound: string;
  enrolledPods: number;
  services: number;
  openConnections: number;
  bpf: ReturnType<Redirect['status']>;
}

export interface RunningAgent {
  stop(): Promise<void>;
}

export async function startAgent(settings: Readonly<AgentSettings>, log: Logger): Promise<RunningAgent> {
  checkPrerequisites(settings.cgroupRoot);

  let index: MeshIndex | undefined;
  const accept = (state: MeshState): MeshIndex | undefined => {
    const next = new MeshIndex(state, settings.node, (path) => cgroupIdOr(path, log));
    if (!next.node) {
      log.error(
        { config: settings.configPath, nodes: [...state.nodes.keys()] },
        `configuration has no v1 Node "${settings.node}"; keeping the last good configuration`,
      );
      return undefined;
    }
    return next;
  };

  let redirect: Redirect | undefined;
  const source = new FileSource(settings.configPath, {
    node: settings.node,
    log,
    onState: (state) => {
      const next = accept(state);
      if (!next) return;
      index = next;
      if (redirect) syncMaps(redirect, next, settings, log);
    },
  });
  await source.start();
  if (!index) {
    throw new NodemeshError(
      'NM_ERR_STARTUP_NODE',
      `node "${settings.node}" is not a v1 Node with an InternalIP in ${settings.configPath}`,
    );
  }

  redirect = await Redirect.open({ bpffsDir: settings.bpffsDir, cgroupRoot: settings.cgroupRoot, log });
  const flows = new FlowTable();
  const currentIndex = (): MeshIndex => index as MeshIndex;
  const outbound = new OutboundProxy(
    { connectTimeoutMs: settings.connectTimeoutMs },
    {
      lookupOrigin: (ip, port) => (redirect as Redirect).lookupOrigin(ip, port),
      index: currentIndex,
      balancer: new RoundRobin(),
      flows,
      log,
    },
  );
  const admin = new AdminServer({
    '/ready': () => ({ ready: true }),
    '/status': (): AgentStatus => {
      const view = currentIndex();
      return {
        node: settings.node,
        nodeIP: view.node?.internalIP ?? null,
        config: { source: settings.configPath, version: view.state.version, rejections: [...view.state.rejections] },
        outbound: outbound.address,
        enrolledPods: view.localPods.size,
        services: view.state.services.size,
        openConnections: flows.openCount,
        bpf: (redirect as Redirect).status(),
      };
    },
    '/flows': () => flows.rows((redirect as Redirect).flows(), currentIndex()),
  });

  try {
    // The wildcard address keeps the listener valid when the node's InternalIP changes in the
    // configuration; connections that connect4 did not redirect find no record and are reset.
    await outbound.listen('0.0.0.0', settings.outboundPort);
    await admin.listen(settings.admin);
    syncMaps(redirect, currentIndex(), settings, log);
  } catch (err) {
    source.stop();
    redirect.close();
    await Promise.all([outbound.close(0), admin.close()]);
    throw err;
  }
  log.info(
    { outbound: outbound.address, admin: `${settings.admin.host}:${settings.admin.port}`, cgroupRoot: settings.cgroupRoot },
    'agent ready',
  );

  return {
    async stop() {
      source.stop();
      await Promise.all([outbound.close(settings.drainMs), admin.close()]);
      // Pins and attachments stay: enrolled pods remain captured (and refused) until the next
      // start replaces them or `nodemesh agent --cleanup` removes them.
      (redirect as Redirect).close();
    },
  };
}

/** Make the BPF maps say what the configuration says. */
function syncMaps(redirect: Redirect, index: MeshIndex, settings: Readonly<AgentSettings>, log: Logger): void {
  const node = index.node;
  if (!node) return;
  redirect.setProxy(node.internalIP, settings.outboundPort);
  const pods = new Map<bigint, { podIP: string }>();
  for (const [id, local] of index.localPods) pods.set(id, { podIP: local.pod.podIP as string });
  redirect.setPods(pods);
  const dests = [...index.destinations.values()].map((d) =>
    d.kind === 'service'
      ? { ip: d.service.clusterIP as string, port: d.port.port, kind: 'service' as const }
      : { ip: d.pod.podIP as string, port: d.port, kind: 'pod' as const },
  );
  redirect.setDests(dests);
  log.info(
    { version: index.state.version, enrolledPods: pods.size, destinations: dests.length },
    'configuration applied to the capture maps',
  );
}

function cgroupIdOr(path: string, log: Logger): bigint | undefined {
  try {
    return cgroupId(path);
  } catch (err) {
    log.warn({ cgroup: path, err: (err as Error).message }, 'pod cgroup not found; pod not captured');
    return undefined;
  }
}
