// The controller's access to the Kubernetes API: which cluster and credentials to use, raw
// JSON reads for the watch, and the TokenReview check that tells which node an agent's
// service-account token speaks for.
import { existsSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { ApiException, AuthenticationV1Api, KubeConfig, type V1TokenReview } from '@kubernetes/client-node';
import { NodemeshError } from '../errors.js';

/** A failure Status from the API server (or no answer at all: status 0). */
export class KubeApiError extends NodemeshError {
  /** The HTTP status; 0 when the request got no answer. */
  readonly status: number;

  constructor(status: number, message: string, options?: { cause?: unknown }) {
    super('NM_ERR_KUBE_API', message, options);
    this.status = status;
  }
}

/** The HTTP status of a failed client-node call or of our own requests, if there was one. */
export function httpStatusOf(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.status;
  if (err instanceof ApiException) return err.code as number;
  const status = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

const IN_CLUSTER_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * The kubeconfig file when a path is given, else the pod's service account (in-cluster).
 * `inClusterPrefix` is prepended to the service-account paths, as client-node allows, for tests.
 */
export function loadKubeConfig(kubeconfigPath?: string, inClusterPrefix = ''): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfigPath) {
    try {
      kc.loadFromFile(kubeconfigPath);
    } catch (err) {
      throw new NodemeshError('NM_ERR_KUBE_CONFIG', `cannot load kubeconfig ${kubeconfigPath}: ${(err as Error).message}`, { cause: err });
    }
    if (!kc.getCurrentCluster()) {
      throw new NodemeshError('NM_ERR_KUBE_CONFIG', `kubeconfig ${kubeconfigPath} names no current context with a cluster; set current-context`);
    }
    return kc;
  }
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const tokenFile = `${inClusterPrefix}${IN_CLUSTER_TOKEN}`;
  if (!host || !process.env.KUBERNETES_SERVICE_PORT || !existsSync(tokenFile)) {
    const missing = !host || !process.env.KUBERNETES_SERVICE_PORT ? 'KUBERNETES_SERVICE_HOST/PORT are not set' : `${tokenFile} does not exist`;
    throw new NodemeshError(
      'NM_ERR_KUBE_CONFIG',
      `no kubeconfig given and not running in a pod (${missing}); pass --kubeconfig, or run in a pod whose service account token is mounted`,
    );
  }
  kc.loadFromCluster(inClusterPrefix);
  return kc;
}

/** GET of a JSON document, untouched: client-node's typed clients would turn timestamps into Dates, unlike its watch. */
export async function getJson(kc: KubeConfig, path: string, timeoutMs = 60_000): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new NodemeshError('NM_ERR_KUBE_CONFIG', 'the kubeconfig has no current cluster');
  const opts: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  const url = new URL(cluster.server.replace(/\/$/, '') + path);
  const send = url.protocol === 'https:' ? https.request : http.request;
  return new Promise((resolve, reject) => {
    const req = send(url, { ...opts, method: 'GET', headers: { ...opts.headers, Accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (err) => reject(new KubeApiError(0, `GET ${path}: ${err.message}`, { cause: err })));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        const status = res.statusCode ?? 0;
        if (status === 200 && body !== undefined) return resolve(body);
        const message = (body as { message?: unknown } | undefined)?.message;
        reject(new KubeApiError(status, `GET ${path}: ${status} ${typeof message === 'string' ? message : text.slice(0, 200)}`));
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => reject(new KubeApiError(0, `GET ${path}: ${err.message}`, { cause: err })));
    req.end();
  });
}

export interface TokenReviewerOptions {
  kubeConfig: KubeConfig;
  /** The audience agents request their projected token for; the review is bound to it. */
  audience: string;
  agentServiceAccount: { namespace: string; name: string };
  /** The node a pod runs on, if that pod (matched by uid) exists and is scheduled. */
  podNode: (namespace: string, podName: string, podUid: string) => string | undefined;
}

/** `unavailable` marks a refusal because the API could not be asked: the agent may retry. */
export type TokenVerdict = { node: string } | { reason: string; unavailable?: true };

const NODE_NAME = 'authentication.kubernetes.io/node-name';
const POD_NAME = 'authentication.kubernetes.io/pod-name';
const POD_UID = 'authentication.kubernetes.io/pod-uid';

/** Checks an agent's token with TokenReview and names the node it speaks for, or why not. */
export function tokenReviewer(opts: TokenReviewerOptions): (token: string) => Promise<TokenVerdict> {
  const api = opts.kubeConfig.makeApiClient(AuthenticationV1Api);
  const { namespace, name } = opts.agentServiceAccount;
  const expectedUser = `system:serviceaccount:${namespace}:${name}`;
  return async (token) => {
    let review: V1TokenReview;
    try {
      review = await api.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [opts.audience] } },
      });
    } catch (err) {
      const hint = httpStatusOf(err) === 403 ? '; the controller needs RBAC create on tokenreviews.authentication.k8s.io' : '';
      return { reason: `TokenReview request failed: ${apiErrorMessage(err)}${hint}`, unavailable: true };
    }
    const status = review.status ?? {};
    if (status.authenticated !== true) return { reason: `token not authenticated by the Kubernetes API: ${status.error ?? 'no reason given'}` };
    // An API server that ignores audiences answers without status.audiences: do not take its word for ours.
    if (!status.audiences?.includes(opts.audience)) {
      return { reason: `token not validated for audience ${opts.audience} (TokenReview audiences: [${(status.audiences ?? []).join(', ')}])` };
    }
    const username = status.user?.username ?? '';
    if (username !== expectedUser) return { reason: `token belongs to ${username || 'an unnamed user'}, not to the agent service account ${expectedUser}` };
    const extra = status.user?.extra ?? {};
    const node = extra[NODE_NAME]?.[0];
    if (node) return { node };
    const podName = extra[POD_NAME]?.[0];
    const podUid = extra[POD_UID]?.[0];
    if (!podName || !podUid) {
      return { reason: `token of ${expectedUser} is not bound to a pod (no ${POD_NAME}/${POD_UID}): mount a projected service-account token, not a Secret-based one` };
    }
    const podNode = opts.podNode(namespace, podName, podUid);
    if (!podNode) return { reason: `token is bound to pod ${namespace}/${podName} (uid ${podUid}), which is not a known pod with that uid scheduled on a node` };
    return { node: podNode };
  };
}

/** What failed, in one line: the Status message of a client-node ApiException (its body is the raw text), else the error's message. */
export function apiErrorMessage(err: unknown): string {
  if (err instanceof ApiException) {
    let message: unknown;
    try {
      message = (JSON.parse(String(err.body)) as { message?: unknown }).message;
    } catch {
      message = undefined;
    }
    return `${err.code} ${typeof message === 'string' ? message : String(err.message).split('\n')[1]?.replace(/^Message: /, '') ?? ''}`.trim();
  }
  const message = String((err as Error)?.message ?? err).split('\n')[0]!;
  // client-node's watch reports a refused request as an Error holding only the status text.
  const status = err instanceof KubeApiError ? undefined : httpStatusOf(err);
  return status ? `${status} ${message}` : message;
}
