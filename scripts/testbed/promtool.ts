// `promtool check metrics` for the tests that check the agent's exposition: a format error
// fails; lint findings come back as lines, minus the one Istio's own metric names earn.
import { spawnSync } from 'node:child_process';
import { NodemeshError } from '../../agent/src/errors.js';

/** promtool wants durations in seconds; Istio's dashboards query this name, so it stays. */
const ISTIO_NAME_LINTS = new Set(['istio_request_duration_milliseconds use base unit "seconds" instead of "milliseconds"']);

// promtool's exit codes: 0 clean, 3 lint findings only; anything else is a parse or run error.
const LINT_FINDINGS = 3;

/** The lint findings on `exposition` other than Istio's names; throws if it does not parse. */
export function promtoolFindings(exposition: string): string[] {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8', timeout: 10_000 });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.status !== 0 && r.status !== LINT_FINDINGS) {
    throw new NodemeshError('NM_ERR_TESTBED_COMMAND', `promtool check metrics failed (${r.status ?? r.signal ?? r.error?.message}): ${output}`);
  }
  return output
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !ISTIO_NAME_LINTS.has(l));
}
