// Pod cgroups found from their UID the way each kubelet driver names them: on directory trees
// in a temporary folder, then on real cgroup v2 directories (as root) that a process can join.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NodemeshError } from '../errors.js';
import { cgroupDir, isPodUid, parseKubeletCgroupRoot, podCgroupCandidates, podCgroupPath } from './kubelet-cgroups.js';
import { cgroupId, findCgroup2Mount } from './prerequisites.js';

const UID = '3f8b6a4c-2d1e-4c7a-9b5f-0e6d8c1a2b3c';
const UID_ = UID.replaceAll('-', '_');

describe('podCgroupPath on directory trees', () => {
  let root: string;
  before(() => (root = fs.mkdtempSync(path.join(os.tmpdir(), 'nodemesh-kubelet-'))));
  after(() => fs.rmSync(root, { recursive: true, force: true }));

  /** A fresh tree holding `dirs` (relative), so each case sees only its own layout. */
  function tree(...dirs: string[]): string {
    const dir = fs.mkdtempSync(path.join(root, 't-'));
    for (const d of dirs) fs.mkdirSync(path.join(dir, d), { recursive: true });
    return dir;
  }

  const layouts: Array<[string, 'Guaranteed' | 'Burstable' | 'BestEffort', string]> = [
    ['cgroupfs', 'Guaranteed', `kubepods/pod${UID}`],
    ['cgroupfs', 'Burstable', `kubepods/burstable/pod${UID}`],
    ['cgroupfs', 'BestEffort', `kubepods/besteffort/pod${UID}`],
    ['systemd', 'Guaranteed', `kubepods.slice/kubepods-pod${UID_}.slice`],
    ['systemd', 'Burstable', `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice`],
    ['systemd', 'BestEffort', `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice`],
  ];
  for (const [driver, qosClass, rel] of layouts) {
    it(`finds a ${qosClass} pod under the ${driver} driver, with or without its QoS class`, () => {
      const dir = tree(rel, `kubepods/burstable/pod${'0'.repeat(8)}-0000-4000-8000-${'0'.repeat(12)}`);
      assert.equal(podCgroupPath(dir, { uid: UID, qosClass }), path.join(dir, rel));
      assert.equal(podCgroupPath(dir, { uid: UID }), path.join(dir, rel));
      assert.equal(podCgroupPath(dir, { uid: UID, qosClass: 'Unknown' }), path.join(dir, rel));
    });
  }

  it('tries the known QoS class first, then the others (a stale status still finds the pod)', () => {
    const dir = tree(`kubepods/pod${UID}`, `kubepods/besteffort/pod${UID}`);
    assert.equal(podCgroupPath(dir, { uid: UID, qosClass: 'BestEffort' }), path.join(dir, `kubepods/besteffort/pod${UID}`));
    assert.equal(podCgroupPath(dir, { uid: UID, qosClass: 'Guaranteed' }), path.join(dir, `kubepods/pod${UID}`));
    const onlyBurstable = tree(`kubepods/burstable/pod${UID}`);
    assert.equal(podCgroupPath(onlyBurstable, { uid: UID, qosClass: 'BestEffort' }), path.join(onlyBurstable, `kubepods/burstable/pod${UID}`));
    assert.deepEqual(podCgroupCandidates({ uid: UID, qosClass: 'Burstable' }).slice(0, 2), [
      `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID_}.slice`,
      `kubepods/burstable/pod${UID}`,
    ]);
  });

  it("follows the kubelet's --cgroup-root: kind's /kubelet renames every systemd level below it", () => {
    const kindSystemd = `kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod${UID_}.slice`;
    const dir = tree(kindSystemd, `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID_}.slice`);
    assert.equal(podCgroupPath(dir, { uid: UID, qosClass: 'BestEffort' }, { prefix: '/kubelet' }), path.join(dir, kindSystemd));
    const kindCgroupfs = tree(`kubelet/kubepods/pod${UID}`);
    assert.equal(podCgroupPath(kindCgroupfs, { uid: UID }, { prefix: '/kubelet' }), path.join(kindCgroupfs, `kubelet/kubepods/pod${UID}`));
    assert.equal(podCgroupPath(kindCgroupfs, { uid: UID }), undefined, 'without the prefix the kind layout is not found');
    assert.equal(
      cgroupDir('systemd', [...parseKubeletCgroupRoot('/nodes/node-1'), 'kubepods', `pod${UID}`]),
      `nodes.slice/nodes-node_1.slice/nodes-node_1-kubepods.slice/nodes-node_1-kubepods-pod${UID_}.slice`,
    );
    assert.deepEqual(parseKubeletCgroupRoot('/'), []);
    assert.deepEqual(parseKubeletCgroupRoot(''), []);
    assert.deepEqual(parseKubeletCgroupRoot('/kubelet/'), ['kubelet']);
    for (const bad of ['/a//b', '/../x', '/a/./b']) {
      assert.throws(() => parseKubeletCgroupRoot(bad), (e: unknown) => e instanceof NodemeshError && e.code === 'NM_ERR_CGROUP_KUBELET_ROOT');
    }
  });

  it("finds pods in the NodeSystemPartition's kubepods/system level after the usual ones", () => {
    const dir = tree(`kubepods.slice/kubepods-system.slice/kubepods-system-burstable.slice/kubepods-system-burstable-pod${UID_}.slice`);
    assert.equal(
      podCgroupPath(dir, { uid: UID, qosClass: 'Burstable' }),
      path.join(dir, `kubepods.slice/kubepods-system.slice/kubepods-system-burstable.slice/kubepods-system-burstable-pod${UID_}.slice`),
    );
    assert.equal(podCgroupCandidates({ uid: UID }).length, 12);
  });

  it('gives undefined while the pod has no cgroup, and for a file where the directory would be', () => {
    const dir = tree('kubepods/burstable');
    assert.equal(podCgroupPath(dir, { uid: UID, qosClass: 'Burstable' }), undefined);
    fs.writeFileSync(path.join(dir, `kubepods/burstable/pod${UID}`), '');
    assert.equal(podCgroupPath(dir, { uid: UID, qosClass: 'Burstable' }), undefined);
    assert.equal(podCgroupPath(path.join(root, 'absent'), { uid: UID }), undefined);
  });

  it('refuses UIDs that are not RFC 4122 UUIDs, so none can reach outside the pod hierarchy', () => {
    const dir = tree('x', 'kubepods/pod/x', `kubepods/pod${UID}`);
    const staticPodHash = '6a3b0f0c2c4e4b8f9d1e2f3a4b5c6d7e';
    for (const uid of ['/../../x', '../x', `${UID}/../../../x`, `${UID}/`, '', staticPodHash, UID.replace('-4c7a-', '-0c7a-'), UID.replace('-9b5f-', '-cb5f-')]) {
      assert.equal(isPodUid(uid), false, uid);
      assert.equal(podCgroupPath(dir, { uid }), undefined, uid);
      assert.deepEqual(podCgroupCandidates({ uid }), [], uid);
    }
    assert.equal(isPodUid(UID.toUpperCase()), true);
  });
});

// The agent attaches to and identifies cgroups by their id (the directory's inode); a directory
// found here must be a real cgroup v2 node a process can be moved into.
describe('podCgroupPath on real cgroup v2 directories', () => {
  const skip = process.getuid?.() !== 0 ? 'needs root to create cgroups' : false;
  const created: string[] = [];
  let base = '';

  before(() => {
    if (skip) return;
    base = path.join(findCgroup2Mount(), `nodemesh-kubelet-test-${process.pid}`);
  });

  /** Makes each level, recorded so `after` removes them deepest first (cgroups go by rmdir). */
  function mkCgroups(rel: string): string {
    let dir = '';
    for (const part of [base, ...rel.split('/')]) {
      dir = dir ? path.join(dir, part) : part;
      if (!fs.existsSync(dir)) (fs.mkdirSync(dir), created.push(dir));
    }
    return dir;
  }

  after(() => {
    for (const dir of created.reverse()) fs.rmdirSync(dir);
  });

  for (const [driver, rel] of [
    ['systemd', `kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod${UID_}.slice`],
    ['cgroupfs', `kubelet/kubepods/burstable/pod${UID}`],
  ] as const) {
    it(`finds a ${driver} pod cgroup a process can join, with the id the agent reads`, { skip }, async () => {
      // One node cgroup per driver, as the testbed nests its nodes.
      const made = mkCgroups(`${driver}/${rel}`);
      const found = podCgroupPath(path.join(base, driver), { uid: UID, qosClass: 'Burstable' }, { prefix: '/kubelet' });
      assert.equal(found, made);
      assert.ok(fs.existsSync(path.join(found, 'cgroup.procs')), 'a cgroup v2 directory has cgroup.procs');
      const id = cgroupId(found);
      assert.ok(id > 1n);

      // The kernel places a process there: /proc/<pid>/cgroup names the same directory.
      const child = spawn('sh', ['-c', 'echo $$ > "$CG/cgroup.procs" && exec sleep 30'], { env: { CG: found }, stdio: 'ignore' });
      try {
        const mount = findCgroup2Mount();
        const deadline = Date.now() + 5000;
        let line = '';
        while (!line.endsWith(path.basename(found)) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
          line = fs.readFileSync(`/proc/${child.pid}/cgroup`, 'utf8').split('\n').find((l) => l.startsWith('0::')) ?? '';
        }
        assert.equal(cgroupId(path.join(mount, line.slice(3))), id);
      } finally {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
    });
  }
});
