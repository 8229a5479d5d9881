// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * keylog: the TLS secrets of OpenSSL connections at the end of their handshake, through a ring buffer.
 *
 * A uprobe on SSL_do_handshake (which SSL_connect and SSL_accept call) remembers the SSL * per thread;
 * its uretprobe, when the call returned 1 (handshake complete), reads from the SSL and its session
 * the client random, the TLS 1.2 master key, the cipher id and the TLS 1.3 secrets, at the offsets
 * userspace found for this OpenSSL build (the `config` map), and sends them in one record. Userspace
 * derives the NSS key log lines. Nothing is read unless the offsets were set.
 *
 * Applications that let SSL_read/SSL_write drive the handshake (node) never call SSL_do_handshake:
 * the same probes on SSL_read, SSL_write and their _ex forms report a connection the first time one of
 * them moves data, keyed in the `reported` LRU map by the SSL * and the start of its client random
 * (so a freed and reused SSL * is a new connection). After that a call costs one 8-byte read and one
 * map lookup.
 */
#include "keylog.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);            /* tid */
	__type(value, __u64);          /* SSL * */
} handshakes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct keylog_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);            /* SSL * ^ the first 8 bytes of its client random */
	__type(value, __u8);
} reported SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");          /* 0: records lost (ring buffer full), 1: records sent */

static __always_inline void stat_add(__u32 index)
{
	__u64 *slot = bpf_map_lookup_elem(&stats, &index);
	if (slot)
		__sync_fetch_and_add(slot, 1);
}

static __always_inline int enter(void *ssl)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, zero = 0;
	struct keylog_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || !cfg->session)
		return 0;
	if ((__u32)(id >> 32) == cfg->exclude_pid || (cfg->target_pid && (__u32)(id >> 32) != cfg->target_pid))
		return 0;
	__u64 ptr = (__u64)ssl;
	bpf_map_update_elem(&handshakes, &tid, &ptr, BPF_ANY);
	return 0;
}

static __always_inline int leave(bool done)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, zero = 0;
	__u64 *found = bpf_map_lookup_elem(&handshakes, &tid);
	if (!found)
		return 0;
	__u64 ssl = *found;
	bpf_map_delete_elem(&handshakes, &tid);
	struct keylog_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!done || !cfg)
		return 0;
	__u64 random_start = 0;
	if (bpf_probe_read_user(&random_start, sizeof(random_start), (void *)(ssl + cfg->client_random)))
		return 0;
	__u64 key = ssl ^ random_start;
	if (bpf_map_lookup_elem(&reported, &key))
		return 0;
	__u8 one = 1;
	bpf_map_update_elem(&reported, &key, &one, BPF_ANY);
	struct keylog_event *e = bpf_ringbuf_reserve(&keys, sizeof(*e), 0);
	if (!e) {
		stat_add(0);
		return 0;
	}
	__u32 failed = 0;
	e->ssl = ssl;
	e->pid = id >> 32;
	e->tid = tid;
	e->cipher_id = 0;
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	failed |= bpf_probe_read_user(&e->version, sizeof(e->version), (void *)(ssl + cfg->ssl_version)) != 0;
	failed |= bpf_probe_read_user(e->client_random, RANDOM_SIZE, (void *)(ssl + cfg->client_random)) != 0;
	failed |= bpf_probe_read_user(e->tls13, sizeof(e->tls13), (void *)(ssl + cfg->handshake_secret)) != 0;
	__u64 session = 0, cipher = 0;
	failed |= bpf_probe_read_user(&session, sizeof(session), (void *)(ssl + cfg->session)) != 0;
	if (session) {
		failed |= bpf_probe_read_user(e->master_key, MASTER_KEY_SIZE,
					      (void *)(session + cfg->master_key)) != 0;
		failed |= bpf_probe_read_user(&cipher, sizeof(cipher), (void *)(session + cfg->session_cipher)) != 0;
		if (cipher)
			failed |= bpf_probe_read_user(&e->cipher_id, sizeof(e->cipher_id),
						      (void *)(cipher + cfg->cipher_id)) != 0;
	} else {
		__builtin_memset(e->master_key, 0, MASTER_KEY_SIZE);
		failed = 1;
	}
	e->flags = failed;
	bpf_ringbuf_submit(e, 0);
	stat_add(1);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(handshake_enter, void *ssl)
{
	return enter(ssl);
}

SEC("uretprobe")
int BPF_KRETPROBE(handshake_leave, int rc)
{
	return leave(rc == 1);
}

/* SSL_read, SSL_write (bytes moved > 0) and SSL_read_ex, SSL_write_ex (1 on success). */
SEC("uprobe")
int BPF_KPROBE(io_enter, void *ssl)
{
	return enter(ssl);
}

SEC("uretprobe")
int BPF_KRETPROBE(io_leave, int rc)
{
	return leave(rc > 0);
}
