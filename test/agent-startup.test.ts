// Start-up checks: the agent refuses to start with a message that names what is wrong, and
// leaves nothing pinned behind.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CLI } from '../scripts/testbed/agent.js';

const isRoot = process.getuid?.() === 0;

const NODE_DOC = `apiVersion: v1
kind: Node
metadata: { name: n1 }
status: { addresses: [{ type: InternalIP, address: 127.0.0.1 }] }
`;

describe('agent start-up checks', { skip: isRoot ? false : 'needs root: the checks run before and around BPF loading' }, () => {
  let dir: string;
  const bpffs = `/sys/fs/bpf/nodemesh/startup-test-${process.pid}`;
  const agent = (args: string[], asUser?: string) => {
    const argv = [CLI, 'agent', '--bpffs', bpffs, '--admin', '127.0.0.1:15999', ...args];
    const r = asUser
      ? spawnSync('setpriv', [`--reuid=${asUser}`, `--regid=${asUser}`, '--clear-groups', process.execPath, ...argv], { timeout: 15_000 })
      : spawnSync(process.execPath, argv, { timeout: 15_000 });
    return { code: r.status, stderr: r.stderr.toString() };
  };

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'nodemesh-startup-'));
    writeFileSync(path.join(dir, 'good.yaml'), NODE_DOC);
    writeFileSync(path.join(dir, 'broken.yaml'), `${NODE_DOC}---\nkind: Service\nmetadata: [oops\n`);
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(bpffs, { recursive: true, force: true });
  });

  it('refuses an invalid configuration, naming the file and line', () => {
    const r = agent(['--config', path.join(dir, 'broken.yaml'), '--node', 'n1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /broken\.yaml:\d+:\d+: invalid YAML/);
    assert.match(r.stderr, /NM_ERR_CONFIG_YAML/);
    assert.equal(existsSync(bpffs), false, 'nothing may be pinned by an agent that did not start');
  });

  it('refuses a configuration file that does not exist', () => {
    const r = agent(['--config', path.join(dir, 'missing.yaml'), '--node', 'n1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /missing\.yaml/);
    assert.match(r.stderr, /NM_ERR_CONFIG_READ/);
  });

  it('refuses a --node that the configuration does not declare', () => {
    const r = agent(['--config', path.join(dir, 'good.yaml'), '--node', 'n7']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /node "n7" is not a v1 Node/);
  });

  it('refuses a cgroup root that is not on cgroup v2', () => {
    const r = agent(['--config', path.join(dir, 'good.yaml'), '--node', 'n1', '--cgroup-root', dir]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /NM_ERR_STARTUP_CGROUP2/);
    assert.ok(r.stderr.includes(dir), r.stderr);
  });

  it('refuses to run without the privileges to load BPF, saying which', () => {
    const r = agent(['--config', path.join(dir, 'good.yaml'), '--node', 'n1'], '65534');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /NM_ERR_STARTUP_PRIVILEGE/);
    assert.match(r.stderr, /CAP_BPF/);
  });

  it('rejects bad arguments with the flag name', () => {
    const admin = spawnSync(process.execPath, [CLI, 'agent', '--config', 'x', '--node', 'n1', '--admin', 'localhost'], { timeout: 15_000 });
    assert.equal(admin.status, 1);
    assert.match(admin.stderr.toString(), /--admin must be HOST:PORT/);
    const config = spawnSync(process.execPath, [CLI, 'agent', '--node', 'n1'], { timeout: 15_000 });
    assert.equal(config.status, 1);
    assert.match(config.stderr.toString(), /give one of --config FILE \(standalone mode\) or --controller ADDR \(Kubernetes mode\)/);
    const both = spawnSync(process.execPath, [CLI, 'agent', '--node', 'n1', '--config', 'x', '--controller', 'c:15012'], { timeout: 15_000 });
    assert.match(both.stderr.toString(), /give one of --config/);
    const cgroupRoot = spawnSync(process.execPath, [CLI, 'agent', '--node', 'n1', '--controller', 'c:15012', '--kubelet-cgroup-root', '/a/../b'], { timeout: 15_000 });
    assert.match(cgroupRoot.stderr.toString(), /--kubelet-cgroup-root: kubelet cgroup root "\/a\/..\/b" must be/);
    const controller = spawnSync(process.execPath, [CLI, 'controller', '--listen', 'nowhere'], { timeout: 15_000 });
    assert.equal(controller.status, 1);
    assert.match(controller.stderr.toString(), /--listen must be HOST:PORT/);
  });
});
