// The controller wiring (`nodemesh controller`): the Kubernetes watch feeds the per-node views,
// the config stream serves them to each node's agent, and the mesh CA (kept in a Secret)
// signs workload certificates under the node-authorization rule.
import type { Logger } from 'pino';
import { AdminServer } from '../admin/server.js';
import { applyConfig } from '../control/apply.js';
import { loadKubeConfig, tokenReviewer } from './kube-client.js';
import type { KubeObject } from './kube-kinds.js';
import { KubeWatch } from './kube-watch.js';
import { nodeViews } from './node-view.js';
import { renewAtHalfLife } from './serving-certificate.js';
import { ConfigStreamServer, type NodeView } from './stream-server.js';
import { NodemeshError } from '../errors.js';
import { nodeMayHold } from '../identity/authz-rule.js';
import { loadOrCreateMeshCA, publishRootCert } from './ca-secret.js';
import { NODE_SERVICE_ACCOUNT } from '../identity/spiffe.js';
import { objectKey, type MeshState } from '../state/model.js';

export interface ControllerSettings {
  /** Absent: in-cluster credentials. */
  kubeconfig?: string;
  /** gRPC listen address: host:port, or unix:/path. */
  listen: string;
  /** /ready and /healthz for the kubelet's probes. */
  health: { host: string; port: number };
  /** The controller's namespace: CA Secret, root ConfigMap, agents' service account. */
  namespace: string;
  caSecret: string;
  rootConfigMap: string;
  trustDomain: string;
  /** Audience the agents' projected tokens are bound to. */
  audience: string;
  /** DNS names of the controller's Service, in its serving certificate. */
  dnsNames: readonly string[];
  logLevel: string;
}

export interface RunningController {
  stop(): Promise<void>;
}

/** The controller's own certificate for agents: 30 days, renewed at half life while it runs. */
const SERVING_CERT_SECONDS = 30 * 86400;

export async function startController(settings: Readonly<ControllerSettings>, log: Logger): Promise<RunningController> {
  const kubeConfig = loadKubeConfig(settings.kubeconfig);
  const ca = await loadOrCreateMeshCA({ kubeConfig, namespace: settings.namespace, name: settings.caSecret, trustDomain: settings.trustDomain, log });
  await publishRootCert(kubeConfig, settings.namespace, settings.rootConfigMap, ca.rootPem);

  // The controller validates what it watches as an agent would (node "" holds no pods): the
  // state answers the node-authorization rule; agents validate again and NACK what is bad.
  let state: MeshState | null = null;
  let views: (node: string) => NodeView = nodeViews([]);
  const refreshState = () => {
    const objects = watch.objects();
    state = applyConfig(state, objects.map((value) => ({ value, origin: originOf(value) })), { node: '' });
    views = nodeViews(objects);
  };
  const watch = new KubeWatch({
    kubeConfig,
    log,
    onChange: () => {
      refreshState();
      server.refresh();
    },
  });
  const servingPair = () => {
    const serving = ca.issueServing(settings.dnsNames, SERVING_CERT_SECONDS);
    return { key: serving.key, cert: serving.certChainPem, notAfter: serving.notAfter };
  };
  const first = servingPair();
  const server = new ConfigStreamServer({
    credentials: first,
    authenticate: tokenReviewer({
      kubeConfig,
      audience: settings.audience,
      agentServiceAccount: { namespace: settings.namespace, name: NODE_SERVICE_ACCOUNT },
      podNode: (namespace, name, uid) => {
        const pod = state?.pods.get(objectKey(namespace, name));
        return pod?.uid === uid ? pod.nodeName : undefined;
      },
    }),
    viewOf: (node) => (state?.nodes.has(node) ? views(node) : undefined),
    sign: async (node, csrPem, ttlSeconds) => {
      if (!state) throw new NodemeshError('NM_ERR_IDENTITY_NOT_AUTHORIZED', 'the controller has not synced with the Kubernetes API yet');
      const current = state;
      return ca.sign({ node, csrPem, ttlSeconds, authorize: (n, id) => nodeMayHold(current, n, id) });
    },
    log,
  });
  await watch.start();
  refreshState();
  const health = new AdminServer({
    '/healthz': () => ({ ok: true }),
    '/ready': () => {
      if (!watch.synced) throw new NodemeshError('NM_ERR_CONTROL_NOT_READY', 'the Kubernetes watch has not synced');
      return { ready: true, agents: server.status() };
    },
  });
  await server.listen(settings.listen);
  const renewal = renewAtHalfLife(first.notAfter, () => {
    const next = servingPair();
    server.replaceServingCertificate(next);
    log.info({ notAfter: next.notAfter.toISOString(), dnsNames: settings.dnsNames }, 'controller serving certificate renewed');
    return next.notAfter;
  });
  await health.listen(settings.health);
  log.info({ listen: settings.listen, health: `${settings.health.host}:${settings.health.port}`, trustDomain: settings.trustDomain }, 'controller ready');
  return {
    stop: async () => {
      watch.stop();
      renewal.stop();
      await Promise.all([server.close(), health.close()]);
    },
  };
}

const originOf = (o: KubeObject): string => `${o.kind} ${o.metadata.namespace ? `${o.metadata.namespace}/` : ''}${o.metadata.name}`;

