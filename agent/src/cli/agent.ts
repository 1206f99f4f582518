// `nodemesh agent`: run the node agent (or remove what an earlier run left with --cleanup).
// Flags are read here, once, into a frozen settings object; a bad value fails with its name.
import type { Command } from 'commander';
import { pino } from 'pino';
import { stopOnSignals } from './signals.js';
import { parseAddress } from '../admin/client.js';
import { isIP } from 'node:net';
import v8 from 'node:v8';
import type { AgentSettings } from '../app.js';
import type { SourceSettings } from '../control/config-source.js';
import { parseKubeletCgroupRoot } from '../redirect/kubelet-cgroups.js';
import { NodemeshError } from '../errors.js';
import { Redirect, findCgroup2Mount } from '../redirect/index.js';
import { checkTrustDomain, DEFAULT_TRUST_DOMAIN } from '../identity/spiffe.js';
import { HBONE_PORT } from '../hbone/protocol.js';
import { parseAccessLogMode } from '../telemetry/access-log.js';
import { DEFAULT_SAMPLING, parseTracingSettings } from '../telemetry/tracing-settings.js';
import { ADMIN_DEFAULT, CONTROLLER_DNS_NAME, LOG_LEVELS, METRICS_DEFAULT, OUTBOUND_PORT } from './defaults.js';

interface AgentFlags {
  config?: string;
  controller?: string;
  controllerCa: string;
  controllerName?: string;
  tokenFile: string;
  stateDir: string;
  kubeletCgroupRoot: string;
  node?: string;
  cgroupRoot?: string;
  bpffs?: string;
  admin: string;
  metrics: string;
  accessLog: string;
  tracingEndpoint?: string;
  tracingSampling?: string;
  logLevel: string;
  trustDomain: string;
  caDir: string;
  certLifetime: string;
  protocolDetectTimeout: string;
  cleanup?: boolean;
}


export function agentCommand(program: Command): void {
  program
    .command('agent')
    .description("run the node agent: load the eBPF capture, serve the node proxy, follow the configuration")
    .option('--config <file>', 'standalone configuration: multi-document YAML in Kubernetes shapes')
    .option('--controller <addr>', 'Kubernetes mode: the controller\'s config stream, HOST:PORT or unix:PATH (instead of --config)')
    .option('--controller-ca <file>', 'the mesh root that signed the controller\'s certificate (the nodemesh-ca-root ConfigMap)', '/etc/nodemesh/ca/root-cert.pem')
    .option('--controller-name <dns>', `name the controller's certificate must carry (default: the host of --controller, or ${CONTROLLER_DNS_NAME} for an IP or unix socket)`)
    .option('--token-file <file>', 'projected service-account token the controller authenticates (audience nodemesh)', '/var/run/secrets/nodemesh/token')
    .option('--kubelet-cgroup-root <path>', "Kubernetes mode: the kubelet's --cgroup-root, which names pod cgroups (/kubelet on kind)", '/')
    .option('--state-dir <dir>', 'Kubernetes mode: where the last accepted configuration and the certificates are kept across restarts', '/var/lib/nodemesh')
    .option('--node <name>', "this node's name (a v1 Node in the configuration)")
    .option('--cgroup-root <dir>', 'cgroup v2 directory whose subtree is captured (default: the cgroup2 mount)')
    .option('--bpffs <dir>', 'where programs, links and maps are pinned (default: /sys/fs/bpf/nodemesh/NODE)')
    .option('--admin <addr>', 'admin API address (keep it on loopback)', ADMIN_DEFAULT)
    .option('--metrics <addr>', 'Prometheus metrics address (/metrics, /stats/prometheus), or off: no listener and no metrics kept', METRICS_DEFAULT)
    .option('--access-log <mode>', 'one JSON line per connection and per HTTP request on stdout: off | all | sampled:<ratio> (failures always kept)', 'all')
    .option('--tracing-endpoint <url>', 'export spans of proxied requests over OTLP/HTTP to this URL, e.g. http://collector:4318/v1/traces (default: tracing off)')
    .option('--tracing-sampling <ratio>', `share of new traces sampled, 0 to 1; requests arriving with a sampling decision keep it (default: ${DEFAULT_SAMPLING})`)
    .option('--trust-domain <domain>', 'SPIFFE trust domain of workload identities', DEFAULT_TRUST_DOMAIN)
    .option('--ca-dir <dir>', 'mesh CA root (ca-cert.pem, ca-key.pem): loaded, or created on first start; share it between nodes', '/var/lib/nodemesh/ca')
    .option('--cert-lifetime <seconds>', 'lifetime of workload certificates (renewed at half life)', '86400')
    .option('--protocol-detect-timeout <ms>', 'a client silent this long after connecting is relayed as opaque TCP (server-first protocols)', '500')
    .option('--log-level <level>', LOG_LEVELS.join(' | '), 'info')
    .option('--cleanup', 'detach and unpin everything an earlier run left, then exit')
    .action(async (flags: AgentFlags) => {
      if (flags.cleanup) {
        const dir = bpffsDir(flags);
        await Redirect.cleanup(dir);
        process.stdout.write(`removed nodemesh programs, links and maps pinned under ${dir}\n`);
        return;
      }
      const settings = readSettings(flags);
      steadyHeap();
      const log = pino({ level: settings.logLevel, base: { node: settings.node } });
      // Loaded here, not with the CLI: the views (status, flows, ...) need none of the agent.
      const { startAgent } = await import('../app.js');
      const agent = await startAgent(settings, log);
      stopOnSignals(log, 'stopping: draining connections', () => agent.stop());
    });
}

/**
 * A node agent runs for weeks beside the pods it serves: its memory should follow what it
 * holds, not how fast it allocates. V8 lets the old space grow to up to 4 times the live data
 * after each full collection; every configuration reload (tens of MiB of short-lived objects
 * for thousands of pods) pushed it there, an RSS of 1.6 times the first load's. Growth is held
 * to 1.5 times instead (V8 reads the flag at each collection), for a little more collection
 * work.
 */
function steadyHeap(): void {
  v8.setFlagsFromString('--heap-growing-percent=50');
}

function bpffsDir(flags: AgentFlags): string {
  if (flags.bpffs) return flags.bpffs;
  if (!flags.node) throw new NodemeshError('NM_ERR_CLI_ARGUMENT', '--node NAME (or --bpffs DIR) is required');
  return `/sys/fs/bpf/nodemesh/${flags.node}`;
}

/** `--metrics HOST:PORT`, or `off` (undefined): no metrics listener and no metric observers. */
export function parseMetricsFlag(value: string): { host: string; port: number } | undefined {
  if (value === 'off') return undefined;
  try {
    return parseAddress(value, '--metrics');
  } catch {
    throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--metrics must be HOST:PORT (e.g. ${METRICS_DEFAULT}) or off, got "${value}"`);
  }
}

function readSettings(flags: AgentFlags): Readonly<AgentSettings> {
  if (!flags.config === !flags.controller) {
    throw new NodemeshError('NM_ERR_CLI_ARGUMENT', 'give one of --config FILE (standalone mode) or --controller ADDR (Kubernetes mode)');
  }
  if (!flags.node) throw new NodemeshError('NM_ERR_CLI_ARGUMENT', '--node NAME is required');
  if (!LOG_LEVELS.includes(flags.logLevel)) {
    throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${flags.logLevel}"`);
  }
  checkTrustDomain(flags.trustDomain);
  const lifetime = Number(flags.certLifetime);
  if (!Number.isInteger(lifetime) || lifetime < 2 || lifetime > 365 * 86400) {
    throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--cert-lifetime must be whole seconds between 2 and 31536000, got "${flags.certLifetime}"`);
  }
  const detect = Number(flags.protocolDetectTimeout);
  if (!Number.isInteger(detect) || detect < 1 || detect > 60_000) {
    throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--protocol-detect-timeout must be whole milliseconds between 1 and 60000, got "${flags.protocolDetectTimeout}"`);
  }
  return Object.freeze({
    source: sourceSettings(flags),
    node: flags.node,
    cgroupRoot: flags.cgroupRoot ?? findCgroup2Mount(),
    bpffsDir: bpffsDir(flags),
    admin: parseAddress(flags.admin, '--admin'),
    metrics: parseMetricsFlag(flags.metrics),
    accessLog: parseAccessLogMode(flags.accessLog),
    tracing: parseTracingSettings(flags.tracingEndpoint, flags.tracingSampling),
    logLevel: flags.logLevel,
    outboundPort: OUTBOUND_PORT,
    hbonePort: HBONE_PORT,
    trustDomain: flags.trustDomain,
    certLifetimeSeconds: lifetime,
    connectTimeoutMs: 10_000,
    detectTimeoutMs: detect,
    drainMs: 5_000,
  });
}

function sourceSettings(flags: AgentFlags): SourceSettings {
  if (flags.config) return { kind: 'file', path: flags.config, caDir: flags.caDir };
  const address = flags.controller as string;
  let host: string;
  if (address.startsWith('unix:')) host = '';
  else host = parseAddress(address, '--controller').host;
  return {
    kind: 'controller',
    address,
    serverName: flags.controllerName ?? (host && isIP(host) === 0 ? host : CONTROLLER_DNS_NAME),
    rootFile: flags.controllerCa,
    tokenFile: flags.tokenFile,
    stateDir: flags.stateDir,
    kubeletCgroupRoot: checkKubeletCgroupRoot(flags.kubeletCgroupRoot),
  };
}

/** Fails at start, with the flag's name, on a value the kubelet could not have been given. */
function checkKubeletCgroupRoot(value: string): string {
  try {
    parseKubeletCgroupRoot(value);
  } catch (err) {
    throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--kubelet-cgroup-root: ${(err as Error).message}`);
  }
  return value;
}
