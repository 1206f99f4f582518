/* cgroup/connect4: sends an enrolled pod's TCP connect() to a mesh address to the node
 * proxy, and records the original destination under the socket cookie for sockops. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "maps.h"

#define SOCK_STREAM 1

char LICENSE[] SEC("license") = "GPL";

/* The deepest enrolled cgroup on the caller's path, so a pod's container cgroups match the
 * pod. Returns 0 when the caller is not in an enrolled pod. */
static __always_inline __u64 enrolled_cgroup(void)
{
	__u64 found = 0;

	for (int level = 0; level < NM_MAX_CGROUP_DEPTH; level++) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(level);

		if (id == 0)
			break;
		if (bpf_map_lookup_elem(&nm_pods, &id))
			found = id;
	}
	return found;
}

SEC("cgroup/connect4")
int nm_connect4(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct nm_config *cfg;
	struct nm_dest_key dest = {};
	struct nm_origin origin = {};
	__u64 cgroup_id, cookie;

	if (ctx->type != SOCK_STREAM)
		return 1;
	cfg = bpf_map_lookup_elem(&nm_config, &zero);
	if (!cfg || cfg->proxy_port == 0)
		return 1;

	dest.ip = ctx->user_ip4;
	dest.port = bpf_ntohs((__u16)ctx->user_port);
	if (!bpf_map_lookup_elem(&nm_dests, &dest))
		return 1;
	cgroup_id = enrolled_cgroup();
	if (!cgroup_id)
		return 1;

	origin.dst_ip = dest.ip;
	origin.dst_port = dest.port;
	origin.cgroup_id = cgroup_id;
	cookie = bpf_get_socket_cookie(ctx);
	/* Without the record the proxy could not serve the connection: leave it alone. */
	if (bpf_map_update_elem(&nm_pending, &cookie, &origin, BPF_ANY))
		return 1;

	ctx->user_ip4 = cfg->proxy_ip;
	ctx->user_port = bpf_htons(cfg->proxy_port);
	return 1;
}
