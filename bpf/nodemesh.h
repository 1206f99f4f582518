/* The ABI between the eBPF programs and the agent: every map key and value, mirrored by
 * agent/src/redirect/abi.ts and checked by its test. Plain C types only, so user space can
 * include it too; explicit padding so both sides agree without compiler guesses. */
#ifndef NODEMESH_H
#define NODEMESH_H

#include <linux/types.h>

#define NM_MAX_PODS 16384
#define NM_MAX_DESTS 65536
#define NM_MAX_PENDING 65536
#define NM_MAX_FLOWS 65536
#define NM_MAX_MTLS_PORTS 65536
#define NM_MAX_PLAINTEXT_LISTENERS NM_MAX_PODS

/* How deep below the attach cgroup a pod's cgroup (or one of its children) may sit. */
#define NM_MAX_CGROUP_DEPTH 32

#define NM_DEST_SERVICE 1
#define NM_DEST_POD 2

#define NM_FLOW_OPEN 1
#define NM_FLOW_CLOSED 2

/* nm_stats indexes (a per-CPU array of __u64 counters). */
#define NM_STAT_PLAINTEXT_REFUSED 0 /* packets to a STRICT listener dropped (SYN retransmits count) */
#define NM_STAT_PROXY_ADMITTED 1    /* packets to a STRICT listener that came from the proxy */
#define NM_STAT_COUNT 2

/* nm_config[0]: the node proxy's outbound listener. A map, not a const volatile, because
 * the node address may change on a config reload without reloading the programs. */
struct nm_config {
	__u32 proxy_ip;   /* network order */
	__u16 proxy_port; /* host order; 0 = not configured, never redirect */
	__u16 pad;
};

/* nm_pods value, keyed by the pod's cgroup v2 id (inode of its cgroup directory). */
struct nm_pod {
	__u32 pod_ip; /* network order */
	__u32 flags;
};

/* nm_dests key: a mesh address (service VIP:port or mesh pod IP:port). */
struct nm_dest_key {
	__u32 ip;   /* network order */
	__u16 port; /* host order */
	__u16 pad;
};

struct nm_dest {
	__u32 kind; /* NM_DEST_* */
	__u32 pad;
};

/* nm_pending value, keyed by socket cookie, from connect4 until the connection is up. */
struct nm_origin {
	__u32 dst_ip;   /* network order */
	__u16 dst_port; /* host order */
	__u16 pad;
	__u64 cgroup_id; /* the enrolled pod cgroup that matched */
};

/* nm_flows key: the pod socket's local address, which the proxy sees as the remote
 * address of the accepted connection. */
struct nm_flow_key {
	__u32 ip;   /* network order */
	__u16 port; /* host order */
	__u16 pad;
};

/* Counters are from the pod's point of view; times are bpf_ktime_get_ns (CLOCK_MONOTONIC). */
struct nm_flow {
	__u32 dst_ip;   /* network order */
	__u16 dst_port; /* host order */
	__u16 state;    /* NM_FLOW_* */
	__u64 cgroup_id;
	__u64 cookie;
	__u64 start_ns;
	__u64 end_ns;
	__u64 bytes_sent;
	__u64 bytes_received;
	__u64 packets_sent;
	__u64 packets_received;
};

/* nm_mtls.mode: how a pod port treats a connection that does not come from the node proxy. */
/* PERMISSIVE (or DISABLE): plaintext accepted. sk_lookup steers it to the node proxy's
 * plaintext listener in the pod's netns when the agent has one there; without one (agent
 * stopped) it reaches the pod directly, which this mode allows anyway. */
#define NM_MTLS_PERMISSIVE 0
/* STRICT: only the node proxy may connect (mTLS was checked there). */
#define NM_MTLS_STRICT 1
/* PERMISSIVE on a pod that has an authorization policy: plaintext accepted only through the
 * node proxy's plaintext listener, where the policy is evaluated; without that listener it
 * is refused as under STRICT, so a stopped agent never lets plaintext past the policy. */
#define NM_MTLS_PERMISSIVE_PROXIED 2

/* nm_pod_mtls value (keyed by pod IP, network order) and nm_port_mtls value (keyed by
 * struct nm_dest_key of the pod IP and port): the PeerAuthentication mode that applies.
 * A port entry overrides the pod's entry; no entry at all means not enforced. */
struct nm_mtls {
	__u32 mode; /* NM_MTLS_* */
	__u32 pad;
};

/* nm_plaintext_listeners (SOCKHASH, declared in sk_lookup.bpf.c): key the pod IP as a __u32
 * (network order), value a __u64: the node proxy's listening socket in that pod's netns, an
 * fd on update from user space, the socket cookie on lookup. */

#endif
