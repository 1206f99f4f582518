// `nodemesh flows`: the node's connections, from the agent's admin API; filtered by the agent,
// once or, with --watch, refreshed every second (in place on a terminal).
import { Option, type Command } from 'commander';
import { adminGet, parseAddress } from '../admin/client.js';
import { FLOW_FILTER_KEYS, type FlowFilter } from '../telemetry/flow-filter.js';
import type { FlowRow } from '../telemetry/flow-table.js';
import { ADMIN_DEFAULT } from './defaults.js';
import { live } from './live.js';
import { bytes, colours, duration, outputWidth, painter, shortName, table, truncate, type Colours } from './table.js';

interface FlowsFlags extends FlowFilter {
  admin: string;
  json?: boolean;
  watch?: boolean;
}

export function flowsCommand(program: Command): void {
  program
    .command('flows')
    .description("list the node's connections: source pod → destination, endpoint, bytes, state")
    .option('--admin <addr>', "the agent's admin API", ADMIN_DEFAULT)
    .option('--json', 'print a JSON array for scripts (with --watch: one array per line)')
    .option('--namespace <ns>', 'only flows with a pod or service of this namespace at either end')
    .option('--pod <name>', 'only flows from, to or served by this pod (name or namespace/name)')
    .option('--service <name>', 'only flows to this service (name or namespace/name)')
    .addOption(new Option('--state <state>', 'only open or only closed flows').choices(['open', 'closed']))
    .option('--watch', 'refresh every second until Ctrl-C')
    .action(async (flags: FlowsFlags) => {
      const address = parseAddress(flags.admin, '--admin');
      const query = new URLSearchParams();
      for (const key of FLOW_FILTER_KEYS) if (flags[key]) query.set(key, flags[key] as string);
      const fetchRows = () => adminGet<FlowRow[]>(address, `/flows${query.size ? `?${query}` : ''}`);
      if (!flags.watch) {
        const rows = await fetchRows();
        process.stdout.write(flags.json ? `${JSON.stringify(rows, null, 2)}\n` : `${renderFlows(rows, colours(), outputWidth()).join('\n')}\n`);
        return;
      }
      await live({ fetch: fetchRows, render: (rows, c) => renderFlows(rows, c, outputWidth()), summary: (rows) => `${rows.length} flows`, json: flags.json === true });
    });
}

/** Name columns, in order; each shortens its name but keeps its suffix (":port", "@node"). */
const NAME_HEADERS = ['SOURCE', 'DESTINATION', 'ENDPOINT'] as const;
/** Below this many columns per name, SEC and then TIME give way to the names. */
const MIN_NAME_WIDTH = 10;
/** The separator table() puts between columns. */
const GAP = 2;

interface Name {
  name: string;
  suffix: string;
}

/**
 * The human form in at most `width` columns (when it can be done at all): DIR, the three names,
 * SENT, RECV, STATE (response flags appended), TIME, SEC, then POLICY when the names fit whole
 * beside it; without POLICY, a denial shows in STATE. Names are shortened like `top` does.
 */
export function renderFlows(rows: readonly FlowRow[], c: Colours, width: number): string[] {
  if (rows.length === 0) return ['no flows yet'];
  const names = rows.map((r) => [source(r), destination(r), endpoint(r)] as const);
  const full = NAME_HEADERS.map((h, i) => Math.max(h.length, ...names.map((n) => whole(n[i] as Name).length)));
  const denied = (r: FlowRow) => r.authorization?.allowed === false;
  const state = (r: FlowRow, withDeny: boolean) =>
    [r.state, withDeny && denied(r) ? 'DENY' : '', r.responseFlags === '-' ? '' : r.responseFlags].filter(Boolean).join(' ');
  const fixed = (withPolicy: boolean): [string, string[]][] => [
    ['SENT', rows.map((r) => bytes(r.bytesSent))],
    ['RECV', rows.map((r) => bytes(r.bytesReceived))],
    ['STATE', rows.map((r) => state(r, !withPolicy))],
    ['TIME', rows.map((r) => duration(r.durationMs))],
    ['SEC', rows.map((r) => security(r))],
  ];
  const span = (cols: readonly [string, string[]][]) => cols.reduce((total, [h, cells]) => total + GAP + Math.max(h.length, ...cells.map((x) => x.length)), 0);
  // Left for the names, between DIR and the other columns.
  const room = (cols: readonly [string, string[]][]) => width - 'DIR'.length - GAP * NAME_HEADERS.length - span(cols);

  // Widest first: POLICY when the names fit whole beside it, and its header too.
  let columns = fixed(true);
  const policyWidth = room(columns) - sum(full) - GAP;
  const withPolicy = policyWidth >= 'POLICY'.length;
  if (!withPolicy) {
    columns = fixed(false);
    for (const drop of ['SEC', 'TIME']) {
      if (room(columns) >= MIN_NAME_WIDTH * NAME_HEADERS.length) break;
      columns = columns.filter(([h]) => h !== drop);
    }
  }
  const widths = withPolicy ? full : nameWidths(names, full, room(columns));
  const headers = ['DIR', ...NAME_HEADERS, ...columns.map(([h]) => h), ...(withPolicy ? ['POLICY'] : [])];
  const cells = rows.map((r, i) => [
    r.direction === 'inbound' ? 'in' : 'out',
    ...NAME_HEADERS.map((_, k) => fit((names[i] as readonly Name[])[k] as Name, widths[k] as number)),
    ...columns.map(([, col]) => col[i] as string),
    ...(withPolicy ? [policy(r, policyWidth)] : []),
  ]);
  return table(
    headers,
    cells,
    painter(c, (text, row, column) => {
      const r = rows[row] as FlowRow;
      const header = headers[column];
      if (header === 'STATE' && (r.responseFlags !== '-' || (!withPolicy && denied(r)))) return c.red(text);
      if (header === 'STATE' && r.state === 'open') return c.green(text);
      if (header === 'POLICY' && denied(r)) return c.red(text);
      return text;
    }),
  ).split('\n');
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
const whole = (n: Name) => `${n.name}${n.suffix}`;
const bare = (n: Name) => `${n.name.slice(n.name.indexOf('/') + 1)}${n.suffix}`;

/**
 * Widths for the name columns within `budget`: whole names if they fit, else names without
 * their namespace (widening columns back to whole names while room is left), else the widest
 * columns narrowed until they fit (names then lose their middle), never below their header.
 */
function nameWidths(names: readonly (readonly Name[])[], full: readonly number[], budget: number): number[] {
  if (sum(full) <= budget) return [...full];
  const short = NAME_HEADERS.map((h, i) => Math.max(h.length, ...names.map((n) => bare(n[i] as Name).length)));
  if (sum(short) <= budget) {
    let left = budget - sum(short);
    return short.map((s, i) => {
      const extra = Math.min(left, (full[i] as number) - s);
      left -= extra;
      return s + extra;
    });
  }
  const capped = (level: number) => short.map((s, i) => Math.max((NAME_HEADERS[i] as string).length, Math.min(s, level)));
  let level = Math.max(...short);
  while (level > 1 && sum(capped(level)) > budget) level -= 1;
  return capped(level);
}

/** A name in `width` columns: shortened by shortName, its suffix kept whole while there is room. */
function fit(n: Name, width: number): string {
  if (whole(n).length <= width) return whole(n);
  const bareName = n.name.slice(n.name.indexOf('/') + 1);
  const room = width - n.suffix.length;
  if (room >= Math.min(6, bareName.length)) return `${shortName(n.name, room)}${n.suffix}`;
  // A long suffix (a node's name) shares the room with the name.
  const name = shortName(n.name, Math.max(3, Math.ceil(width / 2)));
  return `${name}${truncate(n.suffix, width - name.length)}`;
}

function source(r: FlowRow): Name {
  const name = r.source.pod ?? r.source.identity?.replace(/^spiffe:\/\/[^/]+\//, '');
  return name ? { name, suffix: '' } : { name: r.source.ip, suffix: `:${r.source.port}` };
}

const destination = (r: FlowRow): Name => ({ name: r.destination.service ?? r.destination.pod ?? r.destination.ip, suffix: `:${r.destination.port}` });
/** A pod and its node, or the address of an external endpoint (outside the mesh). */
function endpoint(r: FlowRow): Name {
  if (!r.endpoint) return { name: '-', suffix: '' };
  return r.endpoint.pod ? { name: r.endpoint.pod, suffix: `@${r.endpoint.node}` } : { name: r.endpoint.ip, suffix: `:${r.endpoint.port}` };
}
/** Inbound with security none came as plaintext (PERMISSIVE, through :15006), outbound to an
 * external endpoint went out as plaintext; any other outbound one has not reached an upstream. */
const security = (r: FlowRow) =>
  r.security === 'mutual_tls'
    ? 'mTLS'
    : r.security === 'node_local'
      ? 'local'
      : r.security === 'none' && (r.direction === 'inbound' || (r.endpoint && !r.endpoint.pod))
        ? 'plain'
        : '-';

/** The decision, then the deciding policy if it fits in `width`. */
function policy(r: FlowRow, width: number): string {
  if (!r.authorization) return '-';
  const decision = r.authorization.allowed ? 'allow' : 'DENY';
  const room = width - decision.length - 1;
  return r.authorization.policy && room >= 4 ? `${decision} ${shortName(r.authorization.policy, room)}` : decision;
}
