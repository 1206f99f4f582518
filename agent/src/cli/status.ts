// `nodemesh status`: the node, its loaded programs and attachments, and the config version.
import type { Command } from 'commander';
import { adminView } from './view.js';
import type { AgentStatus } from '../app.js';
import { table } from './table.js';

export function statusCommand(program: Command): void {
  adminView<AgentStatus>(
    program
      .command('status')
      .description("show the node's agent: programs and attachments, enrolled pods, services, config version"),
    '/status',
    'print JSON for scripts',
    (s) => {
      const lines = [
        `node:            ${s.node} (${s.nodeIP ?? 'no InternalIP in config'})`,
        `config:          version ${s.config.version} from ${s.config.source}` +
          (s.config.connected === undefined ? '' : s.config.connected ? ' (connected)' : ' (not connected: serving the last accepted configuration)') +
          (s.config.rejections.length ? `, ${s.config.rejections.length} rejected` : ''),
        `trust domain:    ${s.trustDomain}`,
        `listeners:       outbound ${s.listeners.outbound}, hbone ${s.listeners.hbone}, metrics ${s.listeners.metrics}`,
        `enrolled pods:   ${s.enrolledPods}`,
        `services:        ${s.services}`,
        `open conns:      ${s.openConnections}`,
        `pooled upstream: ${s.pooledUpstream.h1} HTTP/1.1 connections, ${s.pooledUpstream.h2} HTTP/2 sessions`,
        `bpf pins:        ${s.bpf.pinDir}`,
        `plaintext refused (STRICT): ${s.bpf.plaintextRefused}`,
        `plaintext via :15006 (PERMISSIVE): ${s.bpf.plaintext.listeners} pods with a listener, sk_lookup prog ${s.bpf.plaintext.programId} in ${s.bpf.plaintext.netnsLinks} pod netns`,
        '',
        table(
          ['PROGRAM', 'ID', 'ATTACH', 'CGROUP'],
          s.bpf.programs.map((p) => [p.name, String(p.id), p.attachType, p.cgroup]),
        ),
        '',
        table(
          ['MAP', 'ENTRIES', 'MAX'],
          s.bpf.maps.map((m) => [m.name, String(m.entries), String(m.maxEntries)]),
        ),
      ];
      for (const r of s.config.rejections) lines.push(`rejected: ${r.resource}: ${r.field}: ${r.reason}`);
      return lines.join('\n');
    },
  );
}
