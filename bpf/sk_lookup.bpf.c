/* sk_lookup, attached to the network namespace of each local pod that accepts plaintext
 * (PeerAuthentication PERMISSIVE): a TCP connection to such a port of the pod that does not
 * come from the node proxy is handed to the node proxy's plaintext listener in the same
 * netns (sk_lookup can only select sockets of its own netns), so the proxy authorizes it,
 * counts it and shows it as plaintext. The accepted socket keeps the original addresses:
 * its local end is the pod IP:port the client dialled, its remote end the client.
 *
 * The kernel runs the program when a SYN (or a UDP datagram) looks for a listening socket,
 * after the established table: packets of connections already set up never come here. */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "mtls.h"

#define AF_INET 2

char LICENSE[] SEC("license") = "GPL";

/* Not in maps.h: it holds sockets of the running agent, which die with it, so it is neither
 * pinned nor shared; each agent run loads a fresh one. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, NM_MAX_PLAINTEXT_LISTENERS);
	__type(key, __u32);
	__type(value, __u64);
} nm_plaintext_listeners SEC(".maps");

SEC("sk_lookup")
int nm_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct nm_mtls *mode;
	struct bpf_sock *sk;
	__u32 pod_ip = ctx->local_ip4;

	if (ctx->family != AF_INET || ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	mode = mtls_mode(pod_ip, (__u16)ctx->local_port);
	if (!mode || mode->mode == NM_MTLS_STRICT)
		return SK_PASS;
	/* The proxy's own connection to the pod, and the pod calling itself, go straight in. */
	if (ctx->remote_ip4 == pod_ip || from_proxy(ctx->remote_ip4))
		return SK_PASS;
	sk = bpf_map_lookup_elem(&nm_plaintext_listeners, &pod_ip);
	/* No listener: the ordinary lookup decides (the pod for PERMISSIVE; ingress refuses
	 * PERMISSIVE_PROXIED). */
	if (!sk)
		return SK_PASS;
	bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	return SK_PASS;
}
