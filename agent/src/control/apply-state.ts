// Pushes an accepted configuration into the node's enforcement points: the capture maps
// (who is enrolled, which addresses are mesh destinations), the kernel's mTLS modes, and the
// set of workload identities whose certificates this node holds; and says which pods need
// the proxy's plaintext listener (PERMISSIVE).
import type { Logger } from 'pino';
import type { CertManager } from '../identity/cert-manager.js';
import { formatSpiffeId } from '../identity/spiffe.js';
import { applicablePolicies, mtlsMode } from '../policy/index.js';
import type { KernelMtlsMode, PodMtls, Redirect, SteeredPod } from '../redirect/index.js';
import { podName, type MeshIndex } from '../state/mesh-index.js';
import type { MeshPod } from '../state/model.js';

export function applyState(
  index: MeshIndex,
  targets: { redirect: Redirect; certs: CertManager; outboundPort: number; trustDomain: string },
  log: Logger,
): void {
  const { redirect, certs } = targets;
  const node = index.node;
  if (!node) return;
  redirect.setProxy(node.internalIP, targets.outboundPort);
  const pods = new Map<bigint, { podIP: string }>();
  for (const [id, local] of index.localPods) pods.set(id, { podIP: local.pod.podIP as string });
  redirect.setPods(pods);
  const dests = [...index.destinations.values()].map((d) =>
    d.kind === 'service'
      ? { ip: d.service.clusterIP as string, port: d.port.port, kind: 'service' as const }
      : { ip: d.pod.podIP as string, port: d.port, kind: 'pod' as const },
  );
  redirect.setDests(dests);
  redirect.setMtls(mtlsMaps(index));
  certs.setIdentities([...index.localPods.values()].map((l) => workloadIdentity(l.pod, targets.trustDomain)));
  log.info(
    { version: index.state.version, enrolledPods: pods.size, destinations: dests.length },
    'configuration applied to the capture maps, mTLS modes and identities',
  );
}

export const workloadIdentity = (pod: MeshPod, trustDomain: string): string =>
  formatSpiffeId({ trustDomain, namespace: pod.namespace, serviceAccount: pod.serviceAccount });

/**
 * Each local pod's default mode, plus the ports whose mode differs (portLevelMtls). Plaintext
 * that PERMISSIVE lets in is steered to the proxy's :15006 listener in the pod's netns, where
 * AuthorizationPolicy applies to it; for a pod that has an ALLOW or DENY policy it must not
 * reach the pod any other way (the agent stopped, the listener not open yet), so the kernel
 * holds it to permissive-proxied: through the proxy or not at all, never failing open.
 */
function mtlsMaps(index: MeshIndex): Map<string, PodMtls> {
  const { state } = index;
  const levelPorts = new Set<number>();
  for (const pa of state.peerAuthentications.values()) for (const p of pa.portLevelMtls) levelPorts.add(p.port);
  const out = new Map<string, PodMtls>();
  for (const { pod } of index.localPods.values()) {
    const policed = applicablePolicies(state, pod).some((p) => p.action !== 'AUDIT');
    const kernelMode = (port: number): KernelMtlsMode =>
      mtlsMode(state, pod, port) === 'STRICT' ? 'strict' : policed ? 'permissive-proxied' : 'permissive';
    // Port 0 is never a portLevelMtls key, so it yields the pod-wide mode.
    const mode = kernelMode(0);
    const ports = new Map<number, KernelMtlsMode>();
    for (const port of levelPorts) {
      const portMode = kernelMode(port);
      if (portMode !== mode) ports.set(port, portMode);
    }
    out.set(pod.podIP as string, { mode, ports });
  }
  return out;
}

/** The local pods that accept plaintext on some port: each needs the proxy's :15006 listener. */
export function plaintextPods(index: MeshIndex): SteeredPod[] {
  const modes = mtlsMaps(index);
  const pods: SteeredPod[] = [];
  for (const { pod } of index.localPods.values()) {
    const m = modes.get(pod.podIP as string);
    // Port entries are those that differ from the pod's mode.
    if (!m || (m.mode === 'strict' && m.ports.size === 0)) continue;
    pods.push({ name: podName(pod), podIP: pod.podIP as string, cgroupPath: pod.cgroupPath as string });
  }
  return pods;
}
