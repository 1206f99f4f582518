// Defaults shared by the agent and the commands that talk to it.
export const ADMIN_DEFAULT = '127.0.0.1:15000';
export const OUTBOUND_PORT = 15001;
export const METRICS_DEFAULT = '0.0.0.0:15020';
