// The benchmark's settings, read once from flags and the environment into a frozen object.
// `--quick` (or NODEMESH_BENCH_QUICK=1) is a short smoke run: one round of short phases, to
// check the benchmark itself, not to publish numbers.
import { parseArgs } from 'node:util';

export interface BenchOptions {
  /** Rounds of direct-then-mesh; every figure reported is the median over them. */
  rounds: number;
  /** Length of each measured open-loop phase. */
  openLoopSeconds: number;
  /** Length of each closed-loop saturation phase (wrk, h2load). */
  saturationSeconds: number;
  /** Unmeasured load before each open-loop phase: connections, pools and the JIT warm up. */
  warmUpSeconds: number;
  /** Open-loop rate, requests per second. */
  rate: number;
  quick: boolean;
}

const FULL = { rounds: 3, openLoopSeconds: 5, saturationSeconds: 4, warmUpSeconds: 1 };
const QUICK = { rounds: 1, openLoopSeconds: 2, saturationSeconds: 2, warmUpSeconds: 1 };

export function readOptions(argv: string[], env: NodeJS.ProcessEnv): Readonly<BenchOptions> {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      rate: { type: 'string' },
    },
  });
  const quick = values.quick || env.NODEMESH_BENCH_QUICK === '1';
  const base = quick ? QUICK : FULL;
  const integer = (name: string, raw: string | undefined, fallback: number, min: number, max: number): number => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new Error(`bench: ${name} must be an integer in [${min}, ${max}], got "${raw}"`);
    }
    return n;
  };
  const openLoopSeconds = integer('--seconds', values.seconds, base.openLoopSeconds, 1, 60);
  return Object.freeze({
    rounds: integer('--rounds', values.rounds, base.rounds, 1, 9),
    openLoopSeconds,
    saturationSeconds: values.seconds === undefined ? base.saturationSeconds : openLoopSeconds,
    warmUpSeconds: base.warmUpSeconds,
    rate: integer('--rate', values.rate, 1000, 10, 20_000),
    quick,
  });
}
