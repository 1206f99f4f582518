// Cleans up live testbeds when the process ends (normal exit, crash or SIGINT/SIGTERM), so
// a failing test leaves no netns or cgroup behind. Hooks are installed only while a
// testbed is live.

type Cleanup = () => void;

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;
const live = new Set<Cleanup>();

export function onProcessEnd(cleanup: Cleanup): () => void {
  if (live.size === 0) {
    process.on('exit', runAll);
    SIGNALS.forEach((signal) => process.on(signal, onSignal));
  }
  live.add(cleanup);
  return () => {
    live.delete(cleanup);
    if (live.size === 0) {
      uninstall();
    }
  };
}

function runAll(): void {
  for (const cleanup of live) {
    try {
      cleanup();
    } catch {
      // Best effort while exiting: go on with the other testbeds.
    }
  }
  live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  runAll();
  uninstall();
  // With our listener gone the default action applies again (unless others listen).
  if (process.listenerCount(signal) === 0) {
    process.kill(process.pid, signal);
  }
}

function uninstall(): void {
  process.off('exit', runAll);
  SIGNALS.forEach((signal) => process.off(signal, onSignal));
}
