// Test doubles for the config stream: a controller certificate, views kept in memory, a token
// table standing in for TokenReview, and a server built from them on 127.0.0.1.
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { issueLeaf, makeCa, pemOf, testKey } from './pki.js';
import type { SignerResult } from '../identity/cert-manager.js';
import type { ServingPair } from '../controller/serving-certificate.js';
import { ConfigStreamServer } from '../controller/stream-server.js';
import { hashView, type ViewResource } from '../control/view-resource.js';

export const SERVER_NAME = 'nodemesh-controller.test';

/** A root and a controller certificate for SERVER_NAME; `issue` makes another (its own key, a new serial). */
export function controllerPki(): { credentials: ServingPair; rootPem: string; issue: (key: number) => ServingPair } {
  const root = makeCa({ cn: 'stream test root', key: testKey(1) });
  const issue = (key: number): ServingPair => ({ key: pemOf(testKey(key)), cert: issueLeaf(root, { dnsNames: [SERVER_NAME], key: testKey(key) }) });
  return { credentials: issue(0), rootPem: root.certPem, issue };
}

/** A resource of a view from a Kubernetes-shaped object. */
export function viewResource(object: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; [field: string]: unknown }; [field: string]: unknown }): ViewResource {
  const { apiVersion, kind, metadata } = object;
  return { apiVersion, kind, namespace: metadata.namespace ?? '', name: metadata.name, json: JSON.stringify(object) };
}

export const service = (name: string, port: number): ViewResource =>
  viewResource({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'shop' }, spec: { clusterIP: '10.96.0.10', ports: [{ port }] } });

/** Token "token-<node>" authenticates as <node>. */
export const tokenOf = (node: string): string => `token-${node}`;

export interface TestController {
  server: ConfigStreamServer;
  /** Per node, its view (a node without one is unknown). */
  views: Map<string, ViewResource[]>;
  /** Tokens the controller was asked to check. */
  checked: string[];
}

export async function startController(opts: {
  log: Logger;
  port?: number;
  credentials: ServingPair;
  views?: Map<string, ViewResource[]>;
  sign?: (node: string, csrPem: string, ttlSeconds: number) => Promise<SignerResult>;
}): Promise<TestController> {
  const views = opts.views ?? new Map<string, ViewResource[]>();
  const checked: string[] = [];
  const server = new ConfigStreamServer({
    credentials: opts.credentials,
    log: opts.log,
    authenticate: async (token) => {
      checked.push(token);
      return token.startsWith('token-') ? { node: token.slice('token-'.length) } : { reason: 'the token is not valid (TokenReview: authenticated false)' };
    },
    viewOf: (node) => {
      const resources = views.get(node);
      return resources && { resources, hash: hashView(resources) };
    },
    sign: opts.sign ?? (() => Promise.reject(new Error('no CA in this test'))),
  });
  await server.listen(`127.0.0.1:${opts.port ?? 0}`);
  return { server, views, checked };
}

export const portOf = (address: string | undefined): number => Number(address?.split(':').pop());

export async function waitFor(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}
