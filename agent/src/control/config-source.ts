// Where the agent's configuration and certificates come from: a YAML file with the mesh CA
// in-process (standalone), or the controller's config stream and certificate signing
// (Kubernetes). The rest of the agent sees the same MeshState and Signer either way.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { FileSource } from './file-source.js';
import { StreamSource } from './stream-source.js';
import { NodemeshError } from '../errors.js';
import { nodeMayHold } from '../identity/authz-rule.js';
import { MeshCA } from '../identity/ca.js';
import type { Signer } from '../identity/cert-manager.js';
import { CertStore } from '../identity/cert-store.js';
import { podCgroupPath } from '../redirect/kubelet-cgroups.js';
import type { MeshState } from '../state/model.js';

export type SourceSettings =
  | { kind: 'file'; path: string; caDir: string }
  | {
      kind: 'controller';
      address: string;
      serverName: string;
      rootFile: string;
      tokenFile: string;
      stateDir: string;
      /** The kubelet's --cgroup-root ("/" by default): it names the pods' cgroups. */
      kubeletCgroupRoot: string;
    };

export interface ConfigSource {
  /** For status: the file, or the controller's address. */
  readonly description: string;
  readonly signer: Signer;
  /** Kubernetes mode keeps certificates on disk for restarts while the controller is down. */
  readonly certStore?: CertStore;
  /** Resolves once a first state was handed to onState. */
  start(): Promise<void>;
  stop(): void;
  /** Kubernetes mode: whether the stream to the controller is open. */
  connected(): boolean | undefined;
}

export interface SourceDeps {
  node: string;
  cgroupRoot: string;
  trustDomain: string;
  log: Logger;
  onState: (state: MeshState) => void;
  /** The state in force, for the in-process CA's node-authorization rule. */
  current: () => MeshState;
}

export function openConfigSource(settings: SourceSettings, deps: SourceDeps): ConfigSource {
  return settings.kind === 'file' ? fileSource(settings, deps) : controllerSource(settings, deps);
}

function fileSource(settings: Extract<SourceSettings, { kind: 'file' }>, deps: SourceDeps): ConfigSource {
  const source = new FileSource(settings.path, { node: deps.node, log: deps.log, onState: deps.onState });
  // Standalone: the CA runs in-process; every node of one mesh must share its root (--ca-dir).
  let ca: MeshCA | undefined;
  return {
    description: settings.path,
    signer: async (csrPem, ttlSeconds) => {
      if (!ca) throw new NodemeshError('NM_ERR_IDENTITY_NOT_READY', 'the in-process mesh CA is not loaded yet');
      return ca.sign({ node: deps.node, csrPem, ttlSeconds, authorize: (node, id) => nodeMayHold(deps.current(), node, id) });
    },
    start: async () => {
      await source.start();
      ca = MeshCA.loadOrCreate({ dir: settings.caDir, trustDomain: deps.trustDomain, log: deps.log });
    },
    stop: () => source.stop(),
    connected: () => undefined,
  };
}

function controllerSource(settings: Extract<SourceSettings, { kind: 'controller' }>, deps: SourceDeps): ConfigSource {
  const rootPem = readRequired(settings.rootFile, '--controller-ca', "the mesh root the controller publishes in the nodemesh-ca-root ConfigMap");
  const source = new StreamSource({
    node: deps.node,
    log: deps.log,
    onState: deps.onState,
    stateDir: settings.stateDir,
    client: {
      address: settings.address,
      serverName: settings.serverName,
      rootPem,
      // Re-read at every connect: the kubelet rotates projected tokens.
      token: () => readRequired(settings.tokenFile, '--token-file', 'the projected service-account token (audience nodemesh)').trim(),
    },
    applyOptions: { podCgroup: (pod) => podCgroupPath(deps.cgroupRoot, pod, { prefix: settings.kubeletCgroupRoot }) },
  });
  return {
    description: `controller ${settings.address}`,
    signer: (csrPem, ttlSeconds) => source.sign(csrPem, ttlSeconds),
    certStore: new CertStore(path.join(settings.stateDir, 'certs')),
    start: () => source.start(),
    stop: () => source.stop(),
    connected: () => source.connected,
  };
}

function readRequired(file: string, flag: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new NodemeshError('NM_ERR_CONFIG_READ', `cannot read ${flag} ${file} (${what}): ${(err as Error).message}`, { cause: err });
  }
}
