/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The DNS enforcer: KubeArmor network.matchDNSQueries, judged when a
 * message is sent to port 53 over UDP or TCP, IPv4 or IPv6, whichever way
 * it is addressed (connect() or sendto()) and whatever call sends it
 * (send, sendto, sendmsg, sendmmsg, io_uring). The question's name is read
 * from the sender's buffers in lower case (DNS compares names without
 * case) and looked up whole and as each domain above it, so a rule for
 * example.com covers www.example.com; the agent also writes each domain
 * followed by the container's resolv.conf search domains, the names a
 * resolver asks for first.
 *
 * A message that is not read as exactly one query with one question (the
 * name spread over more than DNS_SEGMENTS_MAX buffers, memory not paged
 * in, pages spliced from a file, a TCP send holding more or less than one
 * whole message, a malformed name) cannot be judged by name: it is refused
 * when the container's DNS rules block anything, since otherwise it would
 * be a way around them.
 */
#ifndef KADAPTER_DNS_BPF_H
#define KADAPTER_DNS_BPF_H

#include "judge.bpf.h"

#define DNS_HEADER 12 /* id, flags and the four counts */
#define DNS_TCP_PREFIX 2 /* over TCP each message follows its length */
#define DNS_READ_MAX 512 /* bytes of a message read: the header and the longest name fit */
#define DNS_READ_MASK (2 * DNS_READ_MAX - 1)
#define DNS_SEGMENTS_MAX 8 /* buffers of one sendmsg gathered */
#define DNS_NAME_WIRE_MAX 255 /* the longest name on the wire, its length bytes and final zero included */
#define DNS_LABEL_MAX 63

/*
 * Whether a message from this socket goes to port 53 over UDP or TCP, IPv4
 * or IPv6. Every send in the guest passes here, so the socket is read with
 * direct BTF loads, not helper calls.
 */
static __always_inline int to_dns_port(struct socket *sock, struct msghdr *msg)
{
	struct sock *sk = sock->sk;
	struct sockaddr_in *to = msg->msg_name; /* the syscall's kernel copy */
	__u16 family = sk->__sk_common.skc_family, type = sk->sk_type, port = 0;

	if ((family != AF_INET && family != AF_INET6) || (type != SOCK_DGRAM && type != SOCK_STREAM))
		return 0;
	/* sin_port and sin6_port are at one offset; either the address given or the connected one counts */
	if (to && msg->msg_namelen >= (int)sizeof(struct sockaddr_in))
		bpf_probe_read_kernel(&port, sizeof(port), &to->sin_port);
	return port == bpf_htons(DNS_PORT) || sk->__sk_common.skc_dport == bpf_htons(DNS_PORT);
}

/* Copy the first DNS_READ_MAX bytes of the message into buf; return how many, or -1 if they cannot be read. */
static __always_inline int read_message(struct msghdr *msg, char *buf)
{
	int type = BPF_CORE_READ(msg, msg_iter.iter_type);
	void *data = BPF_CORE_READ(msg, msg_iter.ubuf); /* shares its place with the iovec array's pointer */
	__u64 count = BPF_CORE_READ(msg, msg_iter.count), segments, read = 0, take;
	struct iovec segment;

	if (BPF_CORE_READ(msg, msg_iter.iov_offset))
		return -1;
	if (bpf_core_enum_value_exists(enum iter_type, ITER_UBUF) && type == bpf_core_enum_value(enum iter_type, ITER_UBUF)) {
		take = count < DNS_READ_MAX ? count : DNS_READ_MAX;
		return bpf_probe_read_user(buf, take & DNS_READ_MASK, data) ? -1 : (int)take;
	}
	if (type != bpf_core_enum_value(enum iter_type, ITER_IOVEC))
		return -1;
	segments = BPF_CORE_READ(msg, msg_iter.nr_segs);
#pragma unroll
	for (int i = 0; i < DNS_SEGMENTS_MAX; i++) {
		if (i >= segments || read >= DNS_READ_MAX)
			break;
		if (bpf_probe_read_kernel(&segment, sizeof(segment), (struct iovec *)data + i))
			return -1;
		take = segment.iov_len < DNS_READ_MAX - read ? segment.iov_len : DNS_READ_MAX - read;
		if (bpf_probe_read_user(&buf[read & (DNS_READ_MAX - 1)], take & DNS_READ_MASK, segment.iov_base))
			return -1;
		read += take;
	}
	return (int)read;
}

/* The question's name being decoded, between bpf_loop() steps (one per byte of its wire form). */
struct dns_name_walk {
	struct scratch_space *space; /* the message in name.buf, the name into key.path, the state in dns */
};

static long dns_name_step(__u32 index, struct dns_name_walk *walk)
{
	struct scratch_space *space = walk->space;
	struct dns_state *state = &space->dns;
	__u8 byte;

	if (state->at >= state->read) {
		state->done = -1;
		return 1;
	}
	byte = space->name.buf[state->at++ & DNS_READ_MASK];
	if (!state->label_left) {
		if (!byte) {
			state->done = 1;
			return 1;
		}
		if (byte > DNS_LABEL_MAX) { /* a compression pointer or a reserved label type: not a query's name */
			state->done = -1;
			return 1;
		}
		state->label_left = byte;
		if (state->length)
			space->key.path[state->length++ & (KADAPTER_PATH_MAX - 1)] = '.';
		return 0;
	}
	if (byte >= 'A' && byte <= 'Z')
		byte += 'a' - 'A';
	space->key.path[state->length++ & (KADAPTER_PATH_MAX - 1)] = byte;
	state->label_left--;
	return 0;
}

/*
 * Read the question's name of the message into space->key.path (zeroed
 * beforehand): its length, or -1 if the message is not one whole query
 * with one question that could be read.
 */
static __always_inline int question_name(struct msghdr *msg, int size, int stream, struct scratch_space *space)
{
	struct dns_name_walk walk = { .space = space };
	struct dns_state *state = &space->dns;
	char *buf = space->name.buf;
	__u32 start = stream ? DNS_TCP_PREFIX : 0;
	int read = read_message(msg, buf);

	if (read < (int)(start + DNS_HEADER + 1))
		return -1;
	/* over TCP, one send must hold one message exactly, or the next one's name would go unread */
	if (stream && size != DNS_TCP_PREFIX + (((__u8)buf[0] << 8) | (__u8)buf[1]))
		return -1;
	if (buf[(start + 4) & DNS_READ_MASK] != 0 || buf[(start + 5) & DNS_READ_MASK] != 1) /* QDCOUNT == 1 */
		return -1;
	state->at = start + DNS_HEADER;
	state->read = read;
	state->label_left = 0;
	state->length = 0;
	state->done = 0;
	bpf_loop(DNS_NAME_WIRE_MAX, dns_name_step, &walk, 0);
	return state->done == 1 ? (int)state->length : -1;
}

/* The walk over the name's domains, shortest first, between bpf_loop() steps. */
struct domain_walk {
	struct scratch_space *space; /* the name in key.path, the domain looked up in dir_key, matches in dns.rule */
};

static long domain_step(__u32 index, struct domain_walk *walk)
{
	struct scratch_space *space = walk->space;
	__u32 length = space->dns.length, start;
	struct rule_entry *found;

	if (index >= length)
		return 1;
	start = length - 1 - index;
	if (start && space->key.path[(start - 1) & (KADAPTER_PATH_MAX - 1)] != '.')
		return 0;
	/* each domain is longer than the last, so it overwrites it whole; the bytes after stay zero */
	bpf_probe_read_kernel(space->dir_key.path, (length - start) & (KADAPTER_PATH_MAX - 1),
			      &space->key.path[start & (KADAPTER_PATH_MAX - 1)]);
	found = bpf_map_lookup_elem(&name_rules, &space->dir_key);
	if (found)
		merge(&space->dns.rule, found);
	return 0;
}

/* Merge the rules of the name (its length in space->dns) and of every domain above it. */
static __always_inline void match_domains(struct judgement *j, struct scratch_space *space)
{
	struct domain_walk walk = { .space = space };

	__builtin_memset(&space->dir_key, 0, sizeof(space->dir_key));
	__builtin_memset(&space->dns.rule, 0, sizeof(space->dns.rule));
	space->dir_key.ruleset = j->ruleset;
	bpf_loop(KADAPTER_PATH_MAX - 1, domain_step, &walk, 0);
	merge(&j->rule, &space->dns.rule);
}

/* A message to port 53 that cannot be judged by name: refused if the rules block anything, else reported. */
static __always_inline int judge_unread(struct judgement *j)
{
	j->name_flags |= KADAPTER_NAME_DNS_UNREAD;
	if ((j->flags & KADAPTER_BLOCKS) || ((j->flags & KADAPTER_ALLOWLIST) && !(j->flags & KADAPTER_POSTURE_AUDIT))) {
		emit(j, 0, KADAPTER_ACTION_BLOCK, j->deny);
		return j->deny;
	}
	emit(j, 0, KADAPTER_ACTION_AUDIT, 0);
	return 0;
}

SEC("lsm/socket_sendmsg")
int BPF_PROG(kadapter_socket_sendmsg, struct socket *sock, struct msghdr *msg, int size, int ret)
{
	struct scratch_space *space;
	struct judgement j;
	__u32 zero = 0;
	int length;

	if (ret || !to_dns_port(sock, msg))
		return ret;
	if (!judge_start(&j, KADAPTER_KIND_DNS, KADAPTER_OP_DNS_QUERY))
		return 0;
	j.args[0] = BPF_CORE_READ(sock, sk, __sk_common.skc_family);
	j.args[1] = BPF_CORE_READ(sock, sk, sk_type);
	space = bpf_map_lookup_elem(&scratch, &zero);
	if (!space)
		return 0;
	j.key = &space->key;
	__builtin_memset(j.key, 0, sizeof(*j.key));
	j.key->ruleset = j.ruleset;
	length = question_name(msg, size, j.args[1] == SOCK_STREAM, space);
	if (length < 0)
		return judge_unread(&j);
	match_domains(&j, space);
	if (enter_source(&j))
		match_domains(&j, space);
	return decide(&j);
}

#endif /* KADAPTER_DNS_BPF_H */
