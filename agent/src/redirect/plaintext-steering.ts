// PeerAuthentication PERMISSIVE, kernel side: loads sk_lookup.bpf.o onto the capture's pinned
// maps (it reads the mTLS modes and the proxy address from them), and for each local pod that
// accepts plaintext opens the node proxy's listening socket inside the pod's netns, registers
// it in the program's sockhash and attaches the program to that netns. Nothing here is pinned:
// links and sockets die with the agent, and the pods' plaintext then goes to them directly
// (PERMISSIVE) or is refused by the ingress program (a pod with an authorization policy).
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { NodemeshError } from '../errors.js';
import { BpfObject, MapHandle, progInfo, type BpfLink } from '../../../native/libbpf.js';
import { listenInNetns, openOwnNetns } from '../../../native/netns.js';
import { MAP_NAMES, PLAINTEXT_LISTENERS_MAP, U32_SIZE, encodeListenerFd, encodeListenerKey } from './abi.js';
import { SK_LOOKUP_OBJECT, defaultObjDir } from './objects.js';
import { PinLayout } from './pins.js';
import { ownNetnsIno, podNetnsCandidates } from './pod-netns.js';

export interface PlaintextSteeringOptions {
  /** The capture's pin directory (Redirect.open must have created the pins). */
  bpffsDir: string;
  objDir?: string;
  /** Where the listener binds inside each pod's netns; loopback, so nothing reaches it but
   * what sk_lookup hands over (and the pod itself, which the proxy refuses as unknown). */
  listen: { host: string; port: number; backlog?: number };
  log: Logger;
}

export interface SteeredPod {
  /** "namespace/name", for messages. */
  name: string;
  podIP: string;
  cgroupPath: string;
}

export interface SteeringStatus {
  /** The sk_lookup program's id (bpftool prog show id <n>). */
  programId: number;
  /** Listening sockets registered in the sockhash: pods whose plaintext the proxy receives. */
  listeners: number;
  /** Pod netns the program is attached to. */
  netnsLinks: number;
}

interface Attached {
  link: BpfLink;
  netnsIno: bigint;
}


export class PlaintextSteering {
  readonly #object: BpfObject;
  readonly #programFd: number;
  readonly #program: ReturnType<BpfObject['program']>;
  readonly #listeners: MapHandle;
  readonly #ownNetns: number;
  readonly #ownNetnsIno: bigint;
  readonly #opts: PlaintextSteeringOptions;
  readonly #attached = new Map<string, Attached>();

  private constructor(object: BpfObject, opts: PlaintextSteeringOptions) {
    this.#object = object;
    this.#program = object.program('nm_sk_lookup');
    this.#programFd = this.#program.fd;
    this.#listeners = new MapHandle(PLAINTEXT_LISTENERS_MAP, object.mapFd(PLAINTEXT_LISTENERS_MAP));
    this.#ownNetns = openOwnNetns();
    this.#ownNetnsIno = ownNetnsIno();
    this.#opts = opts;
  }

  static open(opts: PlaintextSteeringOptions): PlaintextSteering {
    const pins = new PinLayout(opts.bpffsDir);
    const object = BpfObject.open(path.join(opts.objDir ?? defaultObjDir(), SK_LOOKUP_OBJECT));
    try {
      for (const name of MAP_NAMES) {
        if (!fs.existsSync(pins.map(name))) {
          throw new NodemeshError('NM_ERR_BPF_PIN', `map ${name} is not pinned under ${opts.bpffsDir}: open the capture (Redirect) before the plaintext steering`);
        }
        object.setMapPinPath(name, pins.map(name));
      }
      object.load();
      return new PlaintextSteering(object, opts);
    } catch (err) {
      object.close();
      throw err;
    }
  }

  /**
   * Opens the proxy's listener in the pod's netns, registers it and attaches the program
   * there; returns the listening fd, which the caller owns from then on (closing it
   * unregisters it: the kernel drops a closed socket from a sockhash). Null when no process
   * runs in the pod's cgroup yet, so its netns cannot be found: try again later.
   */
  attach(pod: SteeredPod): number | null {
    this.detach(pod.podIP);
    const candidates = podNetnsCandidates(pod.cgroupPath, this.#ownNetnsIno);
    if (candidates.length === 0) return null;
    const what = `pod ${pod.name} (${pod.podIP})`;
    let lastError: unknown;
    try {
      for (const netns of candidates) {
        let fd: number;
        try {
          const { host, port, backlog = 511 } = this.#opts.listen;
          fd = listenInNetns(netns.fd, this.#ownNetns, { expectAddress: pod.podIP, host, port, backlog }, `${what}, netns of pid ${netns.pid}`);
        } catch (err) {
          // Another namespace of a process in the pod's cgroup (the address check failed): next.
          lastError = err;
          if ((err as NodemeshError).code === 'NM_ERR_NETNS_NOT_FOUND') continue;
          throw err;
        }
        try {
          this.#listeners.update(encodeListenerKey(pod.podIP), encodeListenerFd(fd));
          const link = this.#program.attachNetns(netns.fd, what);
          this.#attached.set(pod.podIP, { link, netnsIno: netns.ino });
          this.#opts.log.debug({ pod: pod.name, podIP: pod.podIP, netns: String(netns.ino) }, 'plaintext steering attached to the pod netns');
          return fd;
        } catch (err) {
          fs.closeSync(fd);
          throw err;
        }
      }
      throw lastError;
    } finally {
      for (const netns of candidates) fs.closeSync(netns.fd);
    }
  }

  /** Detaches the program from the pod's netns; the caller closes the listener it was given. */
  detach(podIP: string): void {
    const a = this.#attached.get(podIP);
    if (!a) return;
    this.#attached.delete(podIP);
    a.link.destroy();
    this.#listeners.delete(encodeListenerKey(podIP));
  }

  status(): SteeringStatus {
    let listeners = 0;
    for (const _ of this.#listeners.keys(U32_SIZE)) listeners++;
    return { programId: progInfo(this.#programFd).id, listeners, netnsLinks: this.#attached.size };
  }

  /** Detaches from every pod netns and unloads the program. */
  close(): void {
    for (const podIP of [...this.#attached.keys()]) this.detach(podIP);
    this.#object.close();
    fs.closeSync(this.#ownNetns);
  }
}
