// The registry of accepted kinds: adding a kind (HTTPRoute, AuthorizationPolicy, ...) is one
// validator module and one line here.
import type { AnyKindValidator } from '../resource.js';
import { authorizationPolicyKinds } from './authorization-policy.js';
import { destinationRuleKinds } from './destination-rule.js';
import { endpointSliceKind } from './endpoint-slice.js';
import { namespaceKind } from './namespace.js';
import { nodeKind } from './node.js';
import { nodemeshPolicyKinds } from './nodemesh-policies.js';
import { peerAuthenticationKinds } from './peer-authentication.js';
import { podKind } from './pod.js';
import { routeKinds } from './routes.js';
import { serviceKind } from './service.js';

const KINDS: readonly AnyKindValidator[] = [
  nodeKind,
  namespaceKind,
  podKind,
  serviceKind,
  endpointSliceKind,
  ...authorizationPolicyKinds,
  ...peerAuthenticationKinds,
  ...routeKinds,
  ...destinationRuleKinds,
  ...nodemeshPolicyKinds,
];

const byType = new Map(KINDS.map((k) => [`${k.apiVersion} ${k.kind}`, k]));

export function lookupKind(apiVersion: string, kind: string): AnyKindValidator | undefined {
  return byType.get(`${apiVersion} ${kind}`);
}

/** "v1 Node, v1 Namespace, ...", for the message that refuses an unknown kind. */
export const ACCEPTED_KINDS = KINDS.map((k) => `${k.apiVersion} ${k.kind}`).join(', ');

/** The accepted kind of this name, whatever its apiVersion (then it is the apiVersion that is wrong). */
export const kindNamed = (kind: unknown): AnyKindValidator | undefined => KINDS.find((k) => k.kind === kind);
