// Turns the benchmark's rounds into one figure per path (the median over rounds, so one noisy
// second on a shared machine does not set the result) and prints them as a Markdown table the
// README can show as it is.
import type { OpenLoop, Protocol, Saturation } from './load.js';

/** One path measured once: open-loop latency, saturation throughput, and the agents' cost. */
export interface Measurement {
  openLoop: OpenLoop;
  saturation: Saturation;
  /** CPU seconds (user + system) per 1000 requests of the open-loop phase, per node proxy (agent or HAProxy). */
  agentCpuPer1000?: { n1: number; n2: number };
  /** The same during the saturation phase (batching makes it cheaper per request). */
  agentCpuPer1000AtSaturation?: { n1: number; n2: number };
  agentRssMiB?: number;
}

/** The agents' telemetry: `on` is their default (metrics, access log `all`), `off` neither. */
export type Telemetry = 'on' | 'off';

export interface PathSpec {
  id: string;
  protocol: Protocol;
  /** What the table shows, e.g. "mesh L7 (HBONE mTLS)". */
  label: string;
  /** Undefined for a path without agents (direct, or the anchor). */
  telemetry?: Telemetry;
  /** The anchor: the same hop through a pair of HAProxy processes instead of the agents. */
  anchor?: boolean;
  /** The direct path this one is compared to; undefined for a direct path. */
  baseline?: string;
  /** On a telemetry-off path: the same path with telemetry on, for the overhead. */
  telemetryOn?: string;
}

export interface Summary {
  p50: number;
  p99: number;
  max: number;
  /** Summed over rounds. */
  openLoopErrors: number;
  saturationErrors: number;
  rps: number;
  agentCpuPer1000?: { n1: number; n2: number };
  agentCpuPer1000AtSaturation?: { n1: number; n2: number };
  agentRssMiB?: number;
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

export function summarize(rounds: Measurement[]): Summary {
  const pick = (f: (m: Measurement) => number) => median(rounds.map(f));
  const perNode = (f: (m: Measurement) => { n1: number; n2: number } | undefined) => {
    const values = rounds.map(f).filter((v): v is { n1: number; n2: number } => v !== undefined);
    return values.length === 0 ? undefined : { n1: median(values.map((v) => v.n1)), n2: median(values.map((v) => v.n2)) };
  };
  const summary: Summary = {
    p50: pick((m) => m.openLoop.p50),
    p99: pick((m) => m.openLoop.p99),
    max: Math.max(...rounds.map((m) => m.openLoop.max)),
    openLoopErrors: sum(rounds.map((m) => m.openLoop.errors)),
    saturationErrors: sum(rounds.map((m) => m.saturation.errors)),
    rps: pick((m) => m.saturation.rps),
  };
  const cpu = perNode((m) => m.agentCpuPer1000);
  const cpuAtSaturation = perNode((m) => m.agentCpuPer1000AtSaturation);
  if (cpu) summary.agentCpuPer1000 = cpu;
  if (cpuAtSaturation) summary.agentCpuPer1000AtSaturation = cpuAtSaturation;
  const rss = rounds.map((m) => m.agentRssMiB).filter((v): v is number => v !== undefined);
  if (rss.length > 0) summary.agentRssMiB = Math.max(...rss);
  return summary;
}

const PROTOCOL_NAMES: Record<Protocol, string> = { h1: 'HTTP/1.1', h2: 'HTTP/2' };

export function table(paths: PathSpec[], summaries: Map<string, Summary>): string {
  const ms = (v: number) => `${v.toFixed(2)} ms`;
  const signed = (v: number) => `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(2)} ms`;
  const lines = [
    '| protocol | path | telemetry | p50 | p99 | added p50 | added p99 | max req/s | errors | proxies CPU s / 1000 req (n1 + n2) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const path of paths) {
    const s = summaries.get(path.id);
    if (!s) continue;
    const base = path.baseline === undefined ? undefined : summaries.get(path.baseline);
    const cpu = s.agentCpuPer1000;
    lines.push(
      `| ${[
        PROTOCOL_NAMES[path.protocol],
        path.label,
        path.telemetry ?? '',
        ms(s.p50),
        ms(s.p99),
        base ? signed(s.p50 - base.p50) : '',
        base ? signed(s.p99 - base.p99) : '',
        s.rps.toFixed(0),
        String(s.openLoopErrors + s.saturationErrors),
        cpu ? `${(cpu.n1 + cpu.n2).toFixed(3)} (${cpu.n1.toFixed(3)} + ${cpu.n2.toFixed(3)})` : '',
      ].join(' | ')} |`,
    );
  }
  return lines.join('\n');
}

/** What telemetry adds to each path measured both ways: latency, throughput and CPU, on minus off. */
export function overhead(paths: PathSpec[], summaries: Map<string, Summary>): string {
  const signed = (v: number, digits: number, unit = '') => `${v >= 0 ? '+' : '−'}${Math.abs(v).toFixed(digits)}${unit}`;
  const lines = [
    '| protocol | path | added p50 | added p99 | max req/s | agents CPU s / 1000 req |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const path of paths) {
    const off = summaries.get(path.id);
    const on = path.telemetryOn === undefined ? undefined : summaries.get(path.telemetryOn);
    if (!off || !on) continue;
    const cpu =
      on.agentCpuPer1000 && off.agentCpuPer1000
        ? (() => {
            const n1 = on.agentCpuPer1000.n1 - off.agentCpuPer1000.n1;
            const n2 = on.agentCpuPer1000.n2 - off.agentCpuPer1000.n2;
            const pct = ((on.agentCpuPer1000.n1 + on.agentCpuPer1000.n2) / (off.agentCpuPer1000.n1 + off.agentCpuPer1000.n2) - 1) * 100;
            return `${signed(n1 + n2, 3)} (n1 ${signed(n1, 3)}, n2 ${signed(n2, 3)}; ${signed(pct, 0, ' %')})`;
          })()
        : '';
    lines.push(
      `| ${[
        PROTOCOL_NAMES[path.protocol],
        path.label,
        signed(on.p50 - off.p50, 2, ' ms'),
        signed(on.p99 - off.p99, 2, ' ms'),
        `${signed(on.rps - off.rps, 0)} (${signed((on.rps / off.rps - 1) * 100, 0, ' %')})`,
        cpu,
      ].join(' | ')} |`,
    );
  }
  return lines.join('\n');
}
