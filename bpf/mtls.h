/* PeerAuthentication as the kernel reads it, shared by ingress (refuses what must come from
 * the node proxy) and sk_lookup (steers plaintext to the node proxy's plaintext listener). */
#ifndef NODEMESH_MTLS_H
#define NODEMESH_MTLS_H

#include "maps.h"

/* The port's own mode wins over the pod's; NULL when the pod is in neither map (not enforced). */
static __always_inline struct nm_mtls *mtls_mode(__u32 ip, __u16 port)
{
	struct nm_dest_key key = { .ip = ip, .port = port };
	struct nm_mtls *mode = bpf_map_lookup_elem(&nm_port_mtls, &key);

	if (!mode)
		mode = bpf_map_lookup_elem(&nm_pod_mtls, &ip);
	return mode;
}

/* Whether `saddr` is the node proxy, which connects to pods from the node's InternalIP. */
static __always_inline int from_proxy(__u32 saddr)
{
	__u32 zero = 0;
	struct nm_config *cfg = bpf_map_lookup_elem(&nm_config, &zero);

	return cfg && cfg->proxy_ip != 0 && saddr == cfg->proxy_ip;
}

#endif
