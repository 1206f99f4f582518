// What both inbound front doors (HBONE tunnels and plaintext on :15006) do around the
// inbound checks: open the connection with a row in the node's flow table that says how it
// was decided, keep the row's authorization up to date with per-request denials, show the
// bytes of a long connection while it lasts, and close the row with its byte counts.
import { podName } from '../state/mesh-index.js';
import { authorizationOf, flagForStatus } from '../state/outcome.js';
import type { FlowTable, ProxyFlow } from '../telemetry/flow-table.js';
import type { Inbound, InboundRequest, InboundResult } from './inbound.js';

/** Who is connecting, as the row shows it. */
export type FlowSource = Pick<ProxyFlow, 'sourceIP' | 'sourcePort' | 'sourcePod' | 'sourceIdentity' | 'security'>;

export interface Opened {
  result: InboundResult;
  flow: ProxyFlow;
  /** Closes the row with the pod connection's byte counts; a refused connection's row is already closed. */
  finish(): void;
}

export async function openWithFlow(inbound: Pick<Inbound, 'open'>, flows: FlowTable, req: Omit<InboundRequest, 'onDenied'>, source: FlowSource): Promise<Opened> {
  let row: ProxyFlow | undefined;
  const result = await inbound.open({
    ...req,
    // Per-request denials (HTTP policies): the row shows the most recent one.
    onDenied: (d) => {
      if (row) row.authorization = authorizationOf(d);
    },
  });
  const flow = flows.open({
    direction: 'inbound',
    ...source,
    dstIP: req.target.ip,
    dstPort: req.target.port,
    ...(result.pod ? { dstPod: podName(result.pod) } : {}),
    startMs: Date.now(),
    bytesSent: 0,
    bytesReceived: 0,
    responseFlags: 'stream' in result ? '-' : flagForStatus(result.status),
    ...(result.decision ? { authorization: authorizationOf(result.decision) } : {}),
  });
  row = flow;
  if (!('stream' in result)) {
    flows.close(flow);
    return { result, flow, finish: () => {} };
  }
  const { podSocket } = result;
  // Long connections show progress in metrics before they close.
  flow.live = () => ({ sent: podSocket.bytesWritten, received: podSocket.bytesRead });
  return {
    result,
    flow,
    finish: () => {
      flow.bytesSent = podSocket.bytesWritten;
      flow.bytesReceived = podSocket.bytesRead;
      flows.close(flow);
    },
  };
}
