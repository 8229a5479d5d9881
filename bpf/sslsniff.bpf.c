// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * sslsniff: the plaintext of OpenSSL's SSL_write/SSL_read(_ex) calls, through a ring buffer.
 *
 * - uprobes on SSL_write, SSL_read, SSL_write_ex, SSL_read_ex remember (per thread) the SSL * and the
 *   buffer; the matching uretprobes read how many bytes were transferred and copy the buffer out in
 *   records of at most MAX_CHUNK bytes (bpf_loop), so a large call is split, never cut. The consumer
 *   is woken only when WAKEUP_BYTES are waiting; otherwise it polls every few milliseconds (far fewer
 *   wakeups and context switches under load).
 * - While a thread is inside one of those calls, the socket syscalls it issues (read, write, sendto,
 *   recvfrom, sendmsg, recvmsg; seen by a raw tracepoint on sys_enter, which needs neither kprobes nor
 *   tracefs) give the fd; the fd's socket (task->files->fdt->fd[fd]->private_data->sk) gives the
 *   TCP 4-tuple.
 *   Both are remembered per SSL * (an SSL_read served from OpenSSL's buffer issues no syscall).
 * - Records the ring buffer cannot take, and calls larger than MAX_CHUNKS records, are counted in
 *   the `stats` array for userspace to report.
 */
#include "sslsniff.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct call {
	__u64 ssl;
	__u64 buf;
	__u64 outlen;            /* size_t * of the _ex variants, 0 otherwise */
	__u8 dir;
	__u8 pad[7];
};

struct conn {
	__s32 fd;
	__u16 sport;
	__u16 dport;
	__u8 family;
	__u8 pad[7];
	__u8 saddr[16];
	__u8 daddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 32 * 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);            /* tid */
	__type(value, struct call);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);            /* tid */
	__type(value, struct conn);
} call_conn SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);            /* (tgid << 32) ^ SSL * */
	__type(value, struct conn);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ssl_event);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

static __always_inline void stat_add(__u32 index, __u64 value)
{
	__u64 *slot = bpf_map_lookup_elem(&stats, &index);
	if (slot)
		__sync_fetch_and_add(slot, value);
}

static __always_inline bool wanted(__u32 tgid)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return true;
	if (tgid == cfg->exclude_pid)
		return false;
	if (cfg->filter_pid && tgid != cfg->target_pid)
		return false;
	if (cfg->filter_uid && (__u32)bpf_get_current_uid_gid() != cfg->target_uid)
		return false;
	return true;
}

static __always_inline int enter(void *ssl, const void *buf, void *outlen, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	if (!wanted(id >> 32))
		return 0;
	struct call c = {.ssl = (__u64)ssl, .buf = (__u64)buf, .outlen = (__u64)outlen, .dir = dir};
	bpf_map_update_elem(&calls, &tid, &c, BPF_ANY);
	bpf_map_delete_elem(&call_conn, &tid);
	return 0;
}

struct emit_ctx {
	struct call *call;
	struct conn *conn;
	__u64 total;
	__u64 ts;
	__u64 id;
	__u32 uid;
};

static long emit_chunk(__u32 index, void *data)
{
	struct emit_ctx *ctx = data;
	__u32 zero = 0;
	struct ssl_event *e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 1;
	__u64 offset = (__u64)index * MAX_CHUNK;
	if (offset >= ctx->total)
		return 1;
	__u64 remaining = ctx->total - offset;
	__u32 len = remaining > MAX_CHUNK ? MAX_CHUNK : (__u32)remaining;

	e->ts_ns = ctx->ts;
	e->ssl = ctx->call->ssl;
	e->offset = offset;
	e->total = ctx->total;
	e->pid = ctx->id >> 32;
	e->tid = (__u32)ctx->id;
	e->uid = ctx->uid;
	e->len = len;
	e->dir = ctx->call->dir;
	e->flags = 0;
	e->pad = 0;
	if (ctx->conn) {
		e->fd = ctx->conn->fd;
		e->sport = ctx->conn->sport;
		e->dport = ctx->conn->dport;
		e->family = ctx->conn->family;
		__builtin_memcpy(e->saddr, ctx->conn->saddr, 16);
		__builtin_memcpy(e->daddr, ctx->conn->daddr, 16);
	} else {
		e->fd = -1;
		e->sport = 0;
		e->dport = 0;
		e->family = 0;
		__builtin_memset(e->saddr, 0, 16);
		__builtin_memset(e->daddr, 0, 16);
	}
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	len &= (MAX_CHUNK * 2 - 1);
	if (len > MAX_CHUNK)
		return 1;
	if (bpf_probe_read_user(e->data, len, (const void *)(ctx->call->buf + offset)) != 0) {
		e->flags |= 1;
		stat_add(STAT_READ_ERRORS, 1);
	}
	__u64 wake = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
										  : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, e, SSL_EVENT_HEADER_SIZE + len, wake) != 0) {
		stat_add(STAT_DROP_CHUNKS, 1);
		stat_add(STAT_DROP_BYTES, len);
	} else {
		stat_add(STAT_CHUNKS, 1);
		stat_add(STAT_BYTES, len);
	}
	return 0;
}

static __always_inline int leave(struct pt_regs *ctx, bool ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct call *c = bpf_map_lookup_elem(&calls, &tid);
	if (!c)
		return 0;
	long rc = PT_REGS_RC(ctx);
	__u64 total = 0;
	if (ex) {
		size_t done = 0;
		if (rc == 1 && c->outlen && bpf_probe_read_user(&done, sizeof(done), (void *)c->outlen) == 0)
			total = done;
	} else if ((int)rc > 0) {
		total = (__u64)(int)rc;
	}

	__u64 key = (id & 0xffffffff00000000ULL) ^ c->ssl;
	struct conn *seen = bpf_map_lookup_elem(&call_conn, &tid);
	struct conn *known = bpf_map_lookup_elem(&conns, &key);
	if (seen) {
		/* Keep what an earlier call learned when this one saw only part of it. */
		if (known) {
			if (seen->fd < 0)
				seen->fd = known->fd;
			if (!seen->family) {
				seen->family = known->family;
				seen->sport = known->sport;
				seen->dport = known->dport;
				__builtin_memcpy(seen->saddr, known->saddr, 16);
				__builtin_memcpy(seen->daddr, known->daddr, 16);
			}
		}
		bpf_map_update_elem(&conns, &key, seen, BPF_ANY);
		known = bpf_map_lookup_elem(&conns, &key);
	}

	if (total > 0) {
		__u64 limit = (__u64)MAX_CHUNKS * MAX_CHUNK;
		if (total > limit) {
			stat_add(STAT_OVERSIZED, 1);
			stat_add(STAT_OVERSIZED_BYTES, total - limit);
			total = limit;
		}
		struct emit_ctx ectx = {
			.call = c,
			.conn = known,
			.total = total,
			.ts = bpf_ktime_get_boot_ns(),
			.id = id,
			.uid = (__u32)bpf_get_current_uid_gid(),
		};
		__u32 n = (total + MAX_CHUNK - 1) / MAX_CHUNK;
		bpf_loop(n, emit_chunk, &ectx, 0);
	}
	bpf_map_delete_elem(&calls, &tid);
	bpf_map_delete_elem(&call_conn, &tid);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter, void *ssl, const void *buf, int num)
{
	return enter(ssl, buf, 0, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_write_leave)
{
	return leave(ctx, false);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{
	return enter(ssl, buf, 0, 1);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_read_leave)
{
	return leave(ctx, false);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, const void *buf, size_t num, size_t *written)
{
	return enter(ssl, buf, written, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_write_ex_leave)
{
	return leave(ctx, true);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	return enter(ssl, buf, readbytes, 1);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_read_ex_leave)
{
	return leave(ctx, true);
}

/* The TCP 4-tuple of socket fd `fd` of the current task: task->files->fdt->fd[fd]->private_data->sk. */
static __always_inline void fd_tuple(struct conn *conn, int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) != 0 || !file)
		return;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return;
	unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == 2) {
		__be32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__be32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(conn->saddr, &s, 4);
		__builtin_memcpy(conn->daddr, &d, 4);
	} else if (family == 10) {
		BPF_CORE_READ_INTO(&conn->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&conn->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return;
	}
	conn->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	conn->dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	conn->family = (__u8)family;
}

/* The fd (and its 4-tuple) of the first socket syscall a thread issues inside an SSL call. */
static __always_inline int saw_fd(int fd)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	if (!bpf_map_lookup_elem(&calls, &tid))
		return 0;
	if (bpf_map_lookup_elem(&call_conn, &tid))
		return 0;
	struct conn fresh = {.fd = fd};
	fd_tuple(&fresh, fd);
	bpf_map_update_elem(&call_conn, &tid, &fresh, BPF_ANY);
	return 0;
}

/* x86-64 syscall numbers of the socket I/O OpenSSL's BIOs (and curl's) use. */
#define NR_read 0
#define NR_write 1
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47

/* A raw tracepoint (no kprobes or tracefs needed): every syscall entry, filtered to the socket I/O ones. */
SEC("raw_tp/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	if (id != NR_read && id != NR_write && id != NR_sendto && id != NR_recvfrom && id != NR_sendmsg &&
	    id != NR_recvmsg)
		return 0;
	return saw_fd((int)BPF_CORE_READ(regs, di));
}

