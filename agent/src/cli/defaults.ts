// Defaults shared by the agent and the commands that talk to it.
export const ADMIN_DEFAULT = '127.0.0.1:15000';
export const OUTBOUND_PORT = 15001;
export const METRICS_DEFAULT = '0.0.0.0:15020';
/** The controller Service's name, as agents dial it and its certificate carries it. */
export const CONTROLLER_DNS_NAME = 'nodemesh-controller.nodemesh-system.svc';
export const CONTROLLER_LISTEN_DEFAULT = '0.0.0.0:15012';
export const CONTROLLER_HEALTH_DEFAULT = '0.0.0.0:15014';
/** Audience of the agents' projected service-account tokens. */
export const TOKEN_AUDIENCE = 'nodemesh';
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
