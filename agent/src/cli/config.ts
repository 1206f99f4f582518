// `nodemesh config dump`: the configuration the agent holds and enforces, which may differ from
// the file when resources were rejected (their last good version stays), and the rejections.
import type { Command } from 'commander';
import { adminView } from './view.js';
import type { ConfigDump } from '../admin/views.js';
import { colours, painter, table } from './table.js';

export function configCommand(program: Command): void {
  const config = program.command('config').description("the agent's configuration");
  adminView<ConfigDump>(
    config
      .command('dump')
      .description('print the accepted configuration as the agent holds it, and what it rejected'),
    '/config_dump',
    'print every resource in full, as JSON',
    (dump) => {
      const c = colours();
      const kinds: Array<[string, ReadonlyArray<{ name: string; namespace?: string }>]> = [
        ['Node', dump.nodes],
        ['Namespace', dump.namespaces],
        ['Pod', dump.pods],
        ['Service', dump.services],
        ['EndpointSlice', dump.endpointSlices],
        ['AuthorizationPolicy', dump.authorizationPolicies],
        ['PeerAuthentication', dump.peerAuthentications],
        ['HTTPRoute', dump.httpRoutes],
        ['GRPCRoute', dump.grpcRoutes],
        ['DestinationRule', dump.destinationRules],
        ['FaultInjection', dump.faultInjections],
        ['LocalRateLimit', dump.localRateLimits],
      ];
      const rows = kinds.flatMap(([kind, items]) => items.map((i) => [kind, i.namespace ?? '-', i.name]));
      const lines = [`version ${dump.version} from ${dump.source} (node ${dump.node})`, '', table(['KIND', 'NAMESPACE', 'NAME'], rows, painter(c))];
      if (dump.rejections.length > 0) {
        lines.push('', c.bold(`REJECTED (${dump.rejections.length}; the last good version of each stays in force)`));
        for (const r of dump.rejections) lines.push(c.red(`${r.resource}: ${r.field}: ${r.reason}`));
      }
      return lines.join('\n');
    },
  );
}
