/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The network enforcer: KubeArmor network.matchProtocols, judged when a
 * socket is created. A socket answers to every name that describes it, so
 * each spelling of the same socket meets the same rules: TCP is asked for
 * as (SOCK_STREAM, 0), (SOCK_STREAM, IPPROTO_TCP) or MPTCP; socket(2)'s
 * SOCK_NONBLOCK and SOCK_CLOEXEC bits are gone before the hook runs.
 * Network names cover the IP and packet families; Unix and netlink
 * sockets are local IPC, not network.
 */
#ifndef KADAPTER_NETWORK_BPF_H
#define KADAPTER_NETWORK_BPF_H

#include "judge.bpf.h"

/* The name of the IP protocol a socket speaks, or 0 for one KubeArmor does not name. */
static __always_inline __u32 ip_protocol_name(int family, int type, int protocol)
{
	switch (protocol) {
	case 0:
		if (type == SOCK_STREAM)
			return KADAPTER_NET_TCP;
		if (type == SOCK_DGRAM)
			return KADAPTER_NET_UDP;
		return 0;
	case IPPROTO_TCP:
	case IPPROTO_MPTCP:
		return KADAPTER_NET_TCP;
	case IPPROTO_UDP:
		return KADAPTER_NET_UDP;
	case IPPROTO_ICMP:
		return family == AF_INET ? KADAPTER_NET_ICMP : 0;
	case IPPROTO_ICMPV6:
		return family == AF_INET6 ? KADAPTER_NET_ICMPV6 : 0;
	case IPPROTO_SCTP:
		return KADAPTER_NET_SCTP;
	case IPPROTO_DCCP:
		return KADAPTER_NET_DCCP;
	}
	return 0;
}

/* The name of a socket type. */
static __always_inline __u32 socket_type_name(int type)
{
	switch (type) {
	case SOCK_STREAM:
		return KADAPTER_NET_STREAM;
	case SOCK_DGRAM:
		return KADAPTER_NET_DGRAM;
	case SOCK_RAW:
		return KADAPTER_NET_RAW;
	case SOCK_RDM:
		return KADAPTER_NET_RDM;
	case SOCK_SEQPACKET:
		return KADAPTER_NET_SEQPACKET;
	case SOCK_PACKET: /* the old way to a packet socket */
		return KADAPTER_NET_PACKET;
	}
	return 0;
}

/* Merge the rules of every name the socket answers to; false for a socket that is not network. */
static __always_inline int match_socket(struct judgement *j, int family, int type, int protocol)
{
	int ip = family == AF_INET || family == AF_INET6;
	__u32 name;

	if (!ip && family != AF_PACKET)
		return 0;
	match_id(j, KADAPTER_NET_ALL);
	name = socket_type_name(type);
	if (name)
		match_id(j, name);
	if (type == SOCK_PACKET || family == AF_PACKET) {
		match_id(j, KADAPTER_NET_PACKET);
		if (type == SOCK_PACKET)
			match_id(j, KADAPTER_NET_RAW); /* SOCK_PACKET sees raw frames as SOCK_RAW does */
	}
	name = ip ? ip_protocol_name(family, type, protocol) : 0;
	if (name)
		match_id(j, name);
	return 1;
}

SEC("lsm/socket_create")
int BPF_PROG(kadapter_socket_create, int family, int type, int protocol, int kern, int ret)
{
	struct judgement j;

	if (ret || kern)
		return ret;
	if (!judge_start(&j, KADAPTER_KIND_NETWORK, KADAPTER_OP_SOCKET))
		return 0;
	j.args[0] = family;
	j.args[1] = type;
	j.args[2] = protocol;
	if (!match_socket(&j, family, type, protocol))
		return 0;
	if (enter_source(&j))
		match_socket(&j, family, type, protocol);
	return decide(&j);
}

#endif /* KADAPTER_NETWORK_BPF_H */
