// One error type for the whole agent: a stable code an operator can search for, and a
// message that names the object and what to check.

export type ErrorCode =
  | 'NM_ERR_CONFIG_YAML'
  | 'NM_ERR_CONFIG_INVALID'
  | 'NM_ERR_CONFIG_READ'
  | 'NM_ERR_STARTUP_PRIVILEGE'
  | 'NM_ERR_STARTUP_CGROUP2'
  | 'NM_ERR_CGROUP_KUBELET_ROOT'
  | 'NM_ERR_STARTUP_BPF'
  | 'NM_ERR_STARTUP_LIBBPF'
  | 'NM_ERR_STARTUP_NODE'
  | 'NM_ERR_BPF_LOAD'
  | 'NM_ERR_BPF_ATTACH'
  | 'NM_ERR_BPF_PIN'
  | 'NM_ERR_BPF_MAP'
  | 'NM_ERR_PROXY_LISTEN'
  | 'NM_ERR_ADMIN_LISTEN'
  | 'NM_ERR_METRICS_LISTEN'
  | 'NM_ERR_ADMIN_UNREACHABLE'
  | 'NM_ERR_ADMIN_TAP_LIMIT'
  | 'NM_ERR_CLI_ARGUMENT'
  | 'NM_ERR_TESTBED_SPEC'
  | 'NM_ERR_TESTBED_UNKNOWN'
  | 'NM_ERR_TESTBED_CGROUP2'
  | 'NM_ERR_TESTBED_COMMAND'
  | 'NM_ERR_TESTBED_DESTROYED'
  | 'NM_ERR_TESTBED_SERVER'
  | 'NM_ERR_IDENTITY_SPIFFE_ID'
  | 'NM_ERR_IDENTITY_CSR'
  | 'NM_ERR_IDENTITY_NOT_AUTHORIZED'
  | 'NM_ERR_IDENTITY_CA_LOAD'
  | 'NM_ERR_IDENTITY_CA_WRITE'
  | 'NM_ERR_IDENTITY_BAD_CERT'
  | 'NM_ERR_IDENTITY_NOT_READY'
  | 'NM_ERR_IDENTITY_PEER'
  | 'NM_ERR_HBONE_LISTEN'
  | 'NM_ERR_HBONE_NO_CREDENTIALS'
  | 'NM_ERR_HBONE_UNREACHABLE'
  | 'NM_ERR_HBONE_CONNECT_TIMEOUT'
  | 'NM_ERR_HBONE_TLS'
  | 'NM_ERR_HBONE_PEER_IDENTITY'
  | 'NM_ERR_HBONE_REFUSED'
  | 'NM_ERR_HBONE_SESSION'
  | 'NM_ERR_HBONE_CLOSED';

export class NodemeshError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'NodemeshError';
    this.code = code;
  }
}
