// `nodemesh controller`: watch Kubernetes, serve each node's view and sign certificates.
// Flags are read here, once, into a frozen settings object; a bad value fails with its name.
import type { Command } from 'commander';
import { pino } from 'pino';
import { stopOnSignals } from './signals.js';
import { parseAddress } from '../admin/client.js';
import type { ControllerSettings } from '../controller/app.js';
import { NodemeshError } from '../errors.js';
import { checkTrustDomain, DEFAULT_TRUST_DOMAIN, NODE_NAMESPACE } from '../identity/spiffe.js';
import { CONTROLLER_HEALTH_DEFAULT, CONTROLLER_LISTEN_DEFAULT, LOG_LEVELS, TOKEN_AUDIENCE } from './defaults.js';

interface ControllerFlags {
  kubeconfig?: string;
  listen: string;
  health: string;
  namespace: string;
  service: string;
  caSecret: string;
  rootConfigmap: string;
  trustDomain: string;
  audience: string;
  logLevel: string;
}

export function controllerCommand(program: Command): void {
  program
    .command('controller')
    .description('run the control plane: watch Kubernetes, stream each node its view, sign workload certificates')
    .option('--kubeconfig <file>', 'kubeconfig to use (default: the pod service account, in-cluster)')
    .option('--listen <addr>', 'config stream and certificate signing (gRPC over TLS): HOST:PORT or unix:PATH', CONTROLLER_LISTEN_DEFAULT)
    .option('--health <addr>', 'HTTP /ready and /healthz for probes', CONTROLLER_HEALTH_DEFAULT)
    .option('--namespace <ns>', "the controller's namespace: CA Secret, root ConfigMap, the agents' service account", NODE_NAMESPACE)
    .option('--service <name>', "the controller's Service, named in its serving certificate", 'nodemesh-controller')
    .option('--ca-secret <name>', 'Secret holding the mesh CA (created on first start)', 'nodemesh-ca')
    .option('--root-configmap <name>', 'ConfigMap the root certificate is published in, for agents to mount', 'nodemesh-ca-root')
    .option('--trust-domain <domain>', 'SPIFFE trust domain of workload identities', DEFAULT_TRUST_DOMAIN)
    .option('--audience <aud>', "audience the agents' projected service-account tokens are bound to", TOKEN_AUDIENCE)
    .option('--log-level <level>', LOG_LEVELS.join(' | '), 'info')
    .action(async (flags: ControllerFlags) => {
      const settings = readSettings(flags);
      // Loaded here, not with the CLI: the Kubernetes client alone is about 85 MiB of RSS that
      // the agent and the CLI views never use.
      const { startController } = await import('../controller/app.js');
      const log = pino({ level: settings.logLevel, base: { component: 'controller' } });
      const controller = await startController(settings, log);
      stopOnSignals(log, 'stopping', () => controller.stop());
    });
}

function readSettings(flags: ControllerFlags): Readonly<ControllerSettings> {
  if (!LOG_LEVELS.includes(flags.logLevel)) {
    throw new NodemeshError('NM_ERR_CLI_ARGUMENT', `--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${flags.logLevel}"`);
  }
  checkTrustDomain(flags.trustDomain);
  if (!flags.listen.startsWith('unix:')) parseAddress(flags.listen, '--listen');
  const service = `${flags.service}.${flags.namespace}`;
  return Object.freeze({
    ...(flags.kubeconfig && { kubeconfig: flags.kubeconfig }),
    listen: flags.listen,
    health: parseAddress(flags.health, '--health'),
    namespace: flags.namespace,
    caSecret: flags.caSecret,
    rootConfigMap: flags.rootConfigmap,
    trustDomain: flags.trustDomain,
    audience: flags.audience,
    dnsNames: [`${service}.svc`, `${service}.svc.cluster.local`],
    logLevel: flags.logLevel,
  });
}
