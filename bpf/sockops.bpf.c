/* sockops: once a redirected connection is up, re-keys its origin record by the local
 * (ip, port) the proxy sees as the peer, then keeps the flow's counters and state. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"

char LICENSE[] SEC("license") = "GPL";

static __always_inline void flow_key(struct bpf_sock_ops *skops, struct nm_flow_key *key)
{
	key->ip = skops->local_ip4;     /* network order, as the map wants */
	key->port = skops->local_port;  /* host order, as the map wants */
	key->pad = 0;
}

static __always_inline void established(struct bpf_sock_ops *skops)
{
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct nm_origin *origin = bpf_map_lookup_elem(&nm_pending, &cookie);
	struct nm_flow_key key;
	struct nm_flow flow = {};

	if (!origin)
		return;
	flow_key(skops, &key);
	flow.dst_ip = origin->dst_ip;
	flow.dst_port = origin->dst_port;
	flow.state = NM_FLOW_OPEN;
	flow.cgroup_id = origin->cgroup_id;
	flow.cookie = cookie;
	flow.start_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&nm_flows, &key, &flow, BPF_ANY);
	bpf_map_delete_elem(&nm_pending, &cookie);
	bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTT_CB_FLAG);
}

/* TCP counts the SYN and each FIN as one unit of sequence space in bytes_acked and
 * bytes_received; the flow reports payload. The SYN was acked before ESTABLISHED (the
 * SYN-ACK is not in bytes_received); which FINs are counted follows from the TCP state the
 * counters were read in. A FIN_WAIT2 socket reset before the peer's FIN is off by one. */
static __always_inline __u64 minus(__u64 count, __u64 sequence_only)
{
	return count > sequence_only ? count - sequence_only : 0;
}

static __always_inline void update(struct bpf_sock_ops *skops, __u32 state, int closed)
{
	struct nm_flow_key key;
	struct nm_flow *flow;
	__u64 fin_sent, fin_received;

	flow_key(skops, &key);
	flow = bpf_map_lookup_elem(&nm_flows, &key);
	/* The cookie guards against a closed flow's key being reused by a new connection. */
	if (!flow || flow->cookie != bpf_get_socket_cookie(skops))
		return;
	/* For a close, `state` is the state it closed from. */
	fin_sent = state == BPF_TCP_FIN_WAIT2 || (closed && (state == BPF_TCP_CLOSING || state == BPF_TCP_LAST_ACK));
	fin_received = state == BPF_TCP_CLOSE_WAIT || state == BPF_TCP_LAST_ACK || state == BPF_TCP_CLOSING ||
		       (closed && state == BPF_TCP_FIN_WAIT2);
	flow->bytes_sent = minus(skops->bytes_acked, 1 + fin_sent);
	flow->bytes_received = minus(skops->bytes_received, fin_received);
	flow->packets_sent = skops->segs_out;
	flow->packets_received = skops->segs_in;
	if (closed) {
		flow->state = NM_FLOW_CLOSED;
		flow->end_ns = bpf_ktime_get_ns();
	}
}

SEC("sockops")
int nm_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		established(skops);
		break;
	case BPF_SOCK_OPS_RTT_CB:
		update(skops, skops->state, 0);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* args[0] is the old state, args[1] the new one. */
		if (skops->args[1] == BPF_TCP_CLOSE)
			update(skops, skops->args[0], 1);
		else
			update(skops, skops->args[1], 0);
		break;
	}
	return 1;
}
