/* The maps, declared once and included by every program so each object carries identical
 * definitions; the agent pins them by name and the second object loads onto the pins. */
#ifndef NODEMESH_MAPS_H
#define NODEMESH_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "nodemesh.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nm_config);
} nm_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_PODS);
	__type(key, __u64);
	__type(value, struct nm_pod);
} nm_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_DESTS);
	__type(key, struct nm_dest_key);
	__type(value, struct nm_dest);
} nm_dests SEC(".maps");

/* LRU: a connect() that never completes leaves its entry behind. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NM_MAX_PENDING);
	__type(key, __u64);
	__type(value, struct nm_origin);
} nm_pending SEC(".maps");

/* LRU: closed flows stay readable for `nodemesh flows` until newer ones push them out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NM_MAX_FLOWS);
	__type(key, struct nm_flow_key);
	__type(value, struct nm_flow);
} nm_flows SEC(".maps");

/* PeerAuthentication, read by ingress: per pod (key: pod IP, network order) ... */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_PODS);
	__type(key, __u32);
	__type(value, struct nm_mtls);
} nm_pod_mtls SEC(".maps");

/* ... and per port of a pod, which wins over the pod's mode. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NM_MAX_MTLS_PORTS);
	__type(key, struct nm_dest_key);
	__type(value, struct nm_mtls);
} nm_port_mtls SEC(".maps");

/* Per CPU so the ingress fast path never contends on a shared counter; the agent sums. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NM_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} nm_stats SEC(".maps");

#endif
