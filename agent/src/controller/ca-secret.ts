// The mesh CA as the controller keeps it in Kubernetes: the root and its key in a Secret
// (created once, by whichever replica gets there first), and the root certificate published
// in a ConfigMap that agents mount to trust the controller and each other.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CoreV1Api, type KubeConfig, type V1Secret } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { apiErrorMessage, httpStatusOf } from './kube-client.js';
import { NodemeshError } from '../errors.js';
import { CA_CERT_FILE, CA_KEY_FILE, MeshCA } from '../identity/ca.js';

export const ROOT_CERT_KEY = 'root-cert.pem';

export interface MeshCASecretOptions {
  kubeConfig: KubeConfig;
  /** Where the Secret lives: the controller's namespace. */
  namespace: string;
  name: string;
  trustDomain: string;
  log: Logger;
}

/**
 * Loads the CA from its Secret, or creates a root and stores it there. Two replicas starting
 * together both create one; the second POST gets 409 and that replica uses the stored one.
 */
export async function loadOrCreateMeshCA(opts: MeshCASecretOptions): Promise<MeshCA> {
  const api = opts.kubeConfig.makeApiClient(CoreV1Api);
  const where = `Secret ${opts.namespace}/${opts.name}`;
  const stored = await readSecret(api, opts, where);
  if (stored) return fromSecret(stored, opts, where);

  const created = withTempDir((dir) => {
    const ca = MeshCA.loadOrCreate({ dir, trustDomain: opts.trustDomain, log: opts.log });
    return { ca, data: { [CA_CERT_FILE]: base64File(dir, CA_CERT_FILE), [CA_KEY_FILE]: base64File(dir, CA_KEY_FILE) } };
  });
  try {
    await api.createNamespacedSecret({
      namespace: opts.namespace,
      body: {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: { name: opts.name, namespace: opts.namespace, labels: { 'app.kubernetes.io/managed-by': 'nodemesh' } },
        data: created.data,
      },
    });
  } catch (err) {
    if (httpStatusOf(err) !== 409) throw secretError(`cannot create ${where}`, err);
    opts.log.info({ secret: where }, `another controller replica created the mesh CA first; using the one in ${where}`);
    const theirs = await readSecret(api, opts, where);
    if (!theirs) throw new NodemeshError('NM_ERR_KUBE_CA_SECRET', `${where} was created by someone else and deleted again before it could be read; restart the controller`);
    return fromSecret(theirs, opts, where);
  }
  opts.log.info({ secret: where }, `stored the new mesh CA in ${where}; back that Secret up`);
  return created.ca;
}

/** Creates or replaces the ConfigMap holding the root certificate; leaves it alone when it already says the same. */
export async function publishRootCert(kubeConfig: KubeConfig, namespace: string, configMapName: string, rootPem: string): Promise<void> {
  const api = kubeConfig.makeApiClient(CoreV1Api);
  const where = `ConfigMap ${namespace}/${configMapName}`;
  const body = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: configMapName, namespace }, data: { [ROOT_CERT_KEY]: rootPem } };
  const fail = (what: string, err: unknown): NodemeshError =>
    new NodemeshError(
      'NM_ERR_KUBE_ROOT_CONFIGMAP',
      `cannot ${what} ${where}: ${apiErrorMessage(err)}; the controller needs RBAC get, create and update on configmaps in ${namespace}`,
      { cause: err },
    );
  let current;
  try {
    current = await api.readNamespacedConfigMap({ namespace, name: configMapName });
  } catch (err) {
    if (httpStatusOf(err) !== 404) throw fail('read', err);
  }
  if (current?.data?.[ROOT_CERT_KEY] === rootPem) return;
  if (!current) {
    try {
      await api.createNamespacedConfigMap({ namespace, body });
      return;
    } catch (err) {
      if (httpStatusOf(err) !== 409) throw fail('create', err);
    }
  }
  try {
    // No resourceVersion: the root we hold is the one to publish, whatever is there now.
    await api.replaceNamespacedConfigMap({ namespace, name: configMapName, body });
  } catch (err) {
    throw fail('update', err);
  }
}

async function readSecret(api: CoreV1Api, opts: MeshCASecretOptions, where: string): Promise<V1Secret | undefined> {
  try {
    return await api.readNamespacedSecret({ namespace: opts.namespace, name: opts.name });
  } catch (err) {
    if (httpStatusOf(err) === 404) return undefined;
    throw secretError(`cannot read ${where}`, err);
  }
}

function fromSecret(secret: V1Secret, opts: MeshCASecretOptions, where: string): MeshCA {
  const data = secret.data ?? {};
  const missing = [CA_CERT_FILE, CA_KEY_FILE].filter((k) => !data[k]);
  if (missing.length) {
    throw new NodemeshError(
      'NM_ERR_KUBE_CA_SECRET',
      `${where} has no ${missing.join(' or ')} in its data; put the CA there (both PEM files), or delete the Secret to let the controller create a new root (every certificate issued so far would stop being trusted)`,
    );
  }
  return withTempDir((dir) => {
    for (const file of [CA_CERT_FILE, CA_KEY_FILE]) fs.writeFileSync(path.join(dir, file), Buffer.from(data[file]!, 'base64'), { mode: 0o600 });
    return MeshCA.loadOrCreate({ dir, trustDomain: opts.trustDomain, log: opts.log });
  });
}

/** MeshCA reads and writes files; give it a private directory that is gone afterwards, so the key does not linger on disk. */
function withTempDir<T>(use: (dir: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nodemesh-ca-'));
  try {
    return use(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const base64File = (dir: string, file: string): string => fs.readFileSync(path.join(dir, file)).toString('base64');

function secretError(what: string, err: unknown): NodemeshError {
  const hint = httpStatusOf(err) === 403 ? '; the controller needs RBAC get and create on secrets in its namespace' : '';
  return new NodemeshError('NM_ERR_KUBE_CA_SECRET', `${what}: ${apiErrorMessage(err)}${hint}`, { cause: err });
}
