/* cgroup_skb/ingress: PeerAuthentication STRICT in the kernel. A TCP connection to a STRICT
 * port of a pod is refused unless it comes from the node proxy (nm_config.proxy_ip), so
 * plaintext from the node host, an un-enrolled pod or another node never reaches the app.
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
#include "maps.h"

#define PASS 1
#define DROP 0

char LICENSE[] SEC("license") = "GPL";

static __always_inline void count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&nm_stats, &stat);

	if (n)
		*n += 1; /* per-CPU slot: no other writer */
}

/* The port's own mode wins over the pod's; a pod in neither map is not enforced. */
static __always_inline int strict(__u32 ip, __u16 port)
{
	struct nm_dest_key key = { .ip = ip, .port = port };
	struct nm_mtls *mode = bpf_map_lookup_elem(&nm_port_mtls, &key);

	if (!mode)
		mode = bpf_map_lookup_elem(&nm_pod_mtls, &ip);
	return mode && mode->strict;
}

SEC("cgroup_skb/ingress")
int nm_ingress(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	struct nm_config *cfg;
	struct iphdr ip;
	struct tcphdr tcp;
	__u32 zero = 0;

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return PASS;
	if (!sk || sk->state != BPF_TCP_LISTEN)
		return PASS;
	/* cgroup_skb sees the packet from its network header. */
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.version != 4 || ip.protocol != IPPROTO_TCP)
		return PASS;
	if (bpf_skb_load_bytes(skb, ip.ihl * 4, &tcp, sizeof(tcp)))
		return PASS;
	if (!strict(ip.daddr, bpf_ntohs(tcp.dest)))
		return PASS;

	cfg = bpf_map_lookup_elem(&nm_config, &zero);
	if (cfg && cfg->proxy_ip != 0 && ip.saddr == cfg->proxy_ip) {
		if (tcp.syn)
			count(NM_STAT_PROXY_ADMITTED);
		return PASS;
	}
	if (tcp.syn)
		count(NM_STAT_PLAINTEXT_REFUSED);
	return DROP;
}
