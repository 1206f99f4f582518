/* cgroup_skb/ingress: PeerAuthentication STRICT in the kernel. A TCP connection to a STRICT
 * port of a pod is refused unless it comes from the node proxy (nm_config.proxy_ip), so
 * plaintext from the node host, an un-enrolled pod or another node never reaches the app.
 * A PERMISSIVE_PROXIED port (PERMISSIVE, but the pod has an authorization policy) is held
 * the same way: its plaintext is only accepted through the node proxy's plaintext listener,
 * where sk_lookup.bpf.c steers it; what arrives at the pod's own listener was not steered
 * (the agent is not running) and would pass unauthorized.
 *
 * The program only runs for packets delivered to a socket of the attach cgroup's subtree
 * (the kernel calls it from sk_filter with the receiving socket), and it only judges packets
 * addressed to a *listening* socket: the SYN, the ACK that completes the handshake (also a
 * syncookie ACK, which never had a SYN seen by the socket) and Fast Open data. Two reasons:
 * - Replies to the pod's own outgoing connections arrive on its connecting sockets, never
 *   on a listener, so a pod-wide STRICT does not cut the pod off from DNS over TCP or the
 *   outside world even though their local (ephemeral) port is "a port of the pod".
 * - Once a connection from the proxy is accepted, the kernel demultiplexes its packets by
 *   the full 4-tuple, whose source is the proxy address already checked here; its later
 *   ACKs, data and RSTs need no check (a forged 4-tuple would also need the sequence space).
 * Connections accepted before a port became STRICT are left alone; see Redirect.setMtls. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "mtls.h"

#define PASS 1
#define DROP 0

char LICENSE[] SEC("license") = "GPL";

static __always_inline void count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&nm_stats, &stat);

	if (n)
		*n += 1; /* per-CPU slot: no other writer */
}

/* Whether the packet found its listener by the ordinary lookup (bound to its destination
 * port, on its address or the wildcard). A packet sk_lookup steered to the node proxy's
 * plaintext listener does not: that socket is bound to 127.0.0.1:15006, and it belongs to
 * the agent, which sits in this cgroup subtree when the capture root is the whole host. */
static __always_inline int bound_to(struct bpf_sock *sk, __u32 daddr, __u16 dport)
{
	return sk->src_port == dport && (sk->src_ip4 == 0 || sk->src_ip4 == daddr);
}

SEC("cgroup_skb/ingress")
int nm_ingress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct nm_mtls *mode;
	struct iphdr ip;
	struct tcphdr tcp;
	__u16 dport;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return PASS;
	if (!sk || sk->state != BPF_TCP_LISTEN)
		return PASS;
	/* cgroup_skb sees the packet from its network header. */
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.version != 4 || ip.protocol != IPPROTO_TCP)
		return PASS;
	if (bpf_skb_load_bytes(skb, ip.ihl * 4, &tcp, sizeof(tcp)))
		return PASS;
	dport = bpf_ntohs(tcp.dest);
	mode = mtls_mode(ip.daddr, dport);
	if (!mode || mode->mode == NM_MTLS_PERMISSIVE)
		return PASS;
	if (!bound_to(sk, ip.daddr, dport))
		return PASS;

	if (from_proxy(ip.saddr)) {
		if (tcp.syn)
			count(NM_STAT_PROXY_ADMITTED);
		return PASS;
	}
	if (tcp.syn)
		count(NM_STAT_PLAINTEXT_REFUSED);
	return DROP;
}
