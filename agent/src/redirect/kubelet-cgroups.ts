// Kubernetes mode: where the kubelet put a pod's cgroup v2 directory, from the pod's UID and
// QoS class, so the capture can enroll the pod without any annotation on it.
//
// The names follow the kubelet (pkg/kubelet/cm): a pod's cgroup is the name
// [<--cgroup-root parts>, "kubepods", <"burstable" | "besteffort" | nothing for Guaranteed>,
// "pod<uid>"], written out by the cgroup driver:
// - cgroupfs: the parts joined by "/": kubepods/burstable/pod<uid>;
// - systemd: each part with "-" escaped to "_", and each level a slice named after all the
//   levels above it (systemd's slice expansion): kubepods.slice/kubepods-burstable.slice/
//   kubepods-burstable-pod<uid with _>.slice.
// The kubelet's --cgroup-root (`prefix` here) is part of the name, so under systemd it renames
// every level below it: kind sets cgroupRoot /kubelet (systemd driver since Kubernetes 1.24),
// giving kubelet.slice/kubelet-kubepods.slice/...; k3s leaves it at "/" and sets only
// --kubelet-cgroups, which moves the kubelet's own process, never the pods. The alpha
// NodeSystemPartition feature nests some pods one level deeper (kubepods/system/...); those
// layouts are tried last. Not covered: cgroupsPerQOS=false (no pod cgroups at all) and static
// pods, whose kubelet UID is an md5 of the manifest rather than the API object's UUID.
import fs from 'node:fs';
import path from 'node:path';
import { NodemeshError } from '../errors.js';

export type QosClass = 'Guaranteed' | 'Burstable' | 'BestEffort';
export type CgroupDriver = 'cgroupfs' | 'systemd';

export interface KubeletCgroupOptions {
  /**
   * The kubelet's --cgroup-root (KubeletConfiguration cgroupRoot) as the kubelet is given it,
   * such as "/kubelet" on kind; default "/" (none).
   */
  prefix?: string;
}

const QOS_CLASSES: readonly QosClass[] = ['Guaranteed', 'Burstable', 'BestEffort'];
const DRIVERS: readonly CgroupDriver[] = ['systemd', 'cgroupfs'];

// RFC 4122 (versions 1-5, variant 10xx): what the API server gives every object. Anything
// else never reaches a path, so a UID cannot walk out of the pod hierarchy.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

export function isPodUid(uid: string): boolean {
  return UUID.test(uid);
}

/**
 * The parts of the kubelet's --cgroup-root: "" and "/" are none. Throws on "." or "..", an
 * empty part ("a//b") or a NUL, which the kubelet would not have been started with either.
 */
export function parseKubeletCgroupRoot(prefix = '/'): string[] {
  const parts = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  if (parts === '') return [];
  const list = parts.split('/');
  if (list.some((p) => p === '' || p === '.' || p === '..' || p.includes('\0'))) {
    throw new NodemeshError(
      'NM_ERR_CGROUP_KUBELET_ROOT',
      `kubelet cgroup root "${prefix}" must be the kubelet's --cgroup-root, such as "/" or "/kubelet", without empty, "." or ".." parts`,
    );
  }
  return list;
}

/** A kubelet cgroup name written out by a driver, relative to the cgroup v2 root. */
export function cgroupDir(driver: CgroupDriver, name: readonly string[]): string {
  if (driver === 'cgroupfs') return name.join('/');
  const escaped = name.map((part) => part.replaceAll('-', '_'));
  return escaped.map((_, i) => `${escaped.slice(0, i + 1).join('-')}.slice`).join('/');
}

function qosOrder(qosClass: string | undefined): QosClass[] {
  const known = QOS_CLASSES.find((q) => q === qosClass);
  return known ? [known, ...QOS_CLASSES.filter((q) => q !== known)] : [...QOS_CLASSES];
}

/**
 * Every directory, relative to the cgroup v2 root, where the kubelet may have put the pod's
 * cgroup, most likely first: its QoS class (status.qosClass) first when known, under both
 * drivers, then the other classes, then the system partition. Empty for a UID that is not
 * an RFC 4122 UUID.
 */
export function podCgroupCandidates(pod: { uid: string; qosClass?: string }, opts: KubeletCgroupOptions = {}): string[] {
  if (!isPodUid(pod.uid)) return [];
  const root = [...parseKubeletCgroupRoot(opts.prefix), 'kubepods'];
  const out: string[] = [];
  for (const partition of [[], ['system']]) {
    for (const qos of qosOrder(pod.qosClass)) {
      const name = [...root, ...partition, ...(qos === 'Guaranteed' ? [] : [qos.toLowerCase()]), `pod${pod.uid}`];
      for (const driver of DRIVERS) out.push(cgroupDir(driver, name));
    }
  }
  return out;
}

/**
 * The pod's cgroup directory under `cgroupRoot` (the cgroup v2 mount, or --cgroup-root), or
 * undefined while it has none (not started yet, or gone) or when its UID is not a UUID.
 * `qosClass` is status.qosClass; another value counts as unknown.
 */
export function podCgroupPath(
  cgroupRoot: string,
  pod: { uid: string; qosClass?: string },
  opts: KubeletCgroupOptions = {},
): string | undefined {
  for (const rel of podCgroupCandidates(pod, opts)) {
    const dir = path.join(cgroupRoot, rel);
    if (fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return dir;
  }
  return undefined;
}
