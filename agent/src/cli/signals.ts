// Long-running commands (agent, controller) stop cleanly on SIGTERM (the kubelet) or SIGINT.
import type { Logger } from 'pino';

export function stopOnSignals(log: Logger, what: string, stop: () => Promise<void>): void {
  const onSignal = (signal: string) => {
    log.info({ signal }, what);
    void stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}
