// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * sslsniff: the plaintext of TLS libraries' write/read calls (OpenSSL's SSL_write/SSL_read(_ex)),
 * through a ring buffer.
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
 * - Every record carries `seq`, its offset in the connection's stream (per direction), counted in
 *   the kernel whether or not the bytes reach userspace: a lost record leaves a gap userspace can
 *   name (connection, direction, byte range) instead of silently joining the bytes around it.
 * - Records the ring buffer cannot take, and calls larger than MAX_CHUNKS records, are counted in
 *   the `stats` array for userspace to report.
 * - Filters (pid, uid, comm at the entry; port at the return) run here, so unwanted bytes are never
 *   copied.
 *
 * Library hooks are thin wrappers around two shared helpers: capture_enter(conn, buf, outlen, dir,
 * lib) at the entry and capture_leave(rc) at the return (or the _key variants when a call does not
 * return on the thread it entered). `conn` is whatever identifies the connection in the process.
 */
#include "sslsniff.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct call {
	__u64 conn;              /* connection key inside the process (SSL *, session, ...) */
	__u64 buf;
	__u64 outlen;            /* size_t * of the _ex variants, 0 otherwise */
	__u8 dir;
	__u8 lib;
	__u8 pad[6];
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

/* What is remembered per connection: its socket and how many bytes each direction transferred. */
struct conn_state {
	struct conn sock;
	__u64 seq[2];            /* bytes transferred so far, indexed by dir (lost ones included) */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DEFAULT_RINGBUF_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);            /* tid, or a library's own call key (e.g. a goroutine) */
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
	__type(key, __u64);            /* (tgid << 32) ^ connection key */
	__type(value, struct conn_state);
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

static __always_inline struct config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

/* The process filters (pid, uid, comm), checked at the entry of a call. */
static __always_inline bool wanted(__u32 tgid)
{
	struct config *cfg = get_config();
	if (!cfg)
		return true;
	if (tgid == cfg->exclude_pid)
		return false;
	if (cfg->filter_pid && tgid != cfg->target_pid)
		return false;
	if (cfg->filter_uid && (__u32)bpf_get_current_uid_gid() != cfg->target_uid)
		return false;
	if (cfg->filter_comm) {
		char comm[TASK_COMM_LEN] = {};
		bpf_get_current_comm(comm, sizeof(comm));
		for (int i = 0; i < TASK_COMM_LEN; i++) {
			if (comm[i] != cfg->target_comm[i])
				return false;
			if (!comm[i])
				break;
		}
	}
	return true;
}

/* The port filter, checked at the return of a call (once the socket is known). */
static __always_inline bool port_wanted(struct conn_state *state)
{
	struct config *cfg = get_config();
	if (!cfg || !cfg->filter_port)
		return true;
	if (!state || !state->sock.family)
		return false;
	return state->sock.sport == cfg->target_port || state->sock.dport == cfg->target_port;
}

/*
 * Shared entry helper for every library: remember, under `key` (the tid for calls that return on
 * the thread they entered), the connection `conn`, the buffer, where the byte count will be written
 * (`outlen`, 0 when the return value is the count) and the direction.
 */
static __always_inline int capture_enter_key(__u64 key, __u64 conn, const void *buf, void *outlen, __u8 dir,
					     __u8 lib)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!wanted(id >> 32))
		return 0;
	struct call c = {.conn = conn, .buf = (__u64)buf, .outlen = (__u64)outlen, .dir = dir, .lib = lib};
	bpf_map_update_elem(&calls, &key, &c, BPF_ANY);
	__u32 tid = (__u32)id;
	bpf_map_delete_elem(&call_conn, &tid);
	return 0;
}

static __always_inline int capture_enter(__u64 conn, const void *buf, void *outlen, __u8 dir, __u8 lib)
{
	return capture_enter_key((__u32)bpf_get_current_pid_tgid(), conn, buf, outlen, dir, lib);
}

struct emit_ctx {
	struct call *call;
	struct conn *sock;
	__u64 total;
	__u64 seq;
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
	e->conn = ctx->call->conn;
	e->seq = ctx->seq + offset;
	e->pid = ctx->id >> 32;
	e->tid = (__u32)ctx->id;
	e->uid = ctx->uid;
	e->len = len;
	e->dir = ctx->call->dir;
	e->lib = ctx->call->lib;
	e->flags = 0;
	if (ctx->sock) {
		e->fd = ctx->sock->fd;
		e->sport = ctx->sock->sport;
		e->dport = ctx->sock->dport;
		e->family = ctx->sock->family;
		__builtin_memcpy(e->saddr, ctx->sock->saddr, 16);
		__builtin_memcpy(e->daddr, ctx->sock->daddr, 16);
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
		e->flags |= EVENT_FLAG_UNREADABLE;
		stat_add(STAT_READ_ERRORS, 1);
	}
	__u64 wake = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKEUP_BYTES ? BPF_RB_FORCE_WAKEUP
										  : BPF_RB_NO_WAKEUP;
	long rc = bpf_ringbuf_output(&events, e, SSL_EVENT_HEADER_SIZE + len, wake);
	/* A reservation can fail with the buffer nearly empty: seen on 6.18 in a 2-vCPU VM with both CPUs
	 * writing, a few 16 KiB records in every 2 GB (the buffer's lock, not its space). Trying again
	 * succeeds (with 3 more tries, 1 of 4 runs of 50 x 20 x 1 MB still lost a record; with 8, none of 5);
	 * when the buffer is full, the tries fail at once. */
	for (int i = 0; i < OUTPUT_RETRIES && rc != 0; i++)
		rc = bpf_ringbuf_output(&events, e, SSL_EVENT_HEADER_SIZE + len, wake);
	if (rc != 0) {
		stat_add(STAT_DROP_CHUNKS, 1);
		stat_add(STAT_DROP_BYTES, len);
	} else {
		stat_add(STAT_CHUNKS, 1);
		stat_add(STAT_BYTES, len);
	}
	return 0;
}

/* The connection's remembered state, merged with the socket this call's syscalls showed (if any). */
static __always_inline struct conn_state *conn_state(__u64 key, __u32 tid)
{
	struct conn_state *state = bpf_map_lookup_elem(&conns, &key);
	if (!state) {
		struct conn_state fresh = {.sock = {.fd = -1}};
		bpf_map_update_elem(&conns, &key, &fresh, BPF_NOEXIST);
		state = bpf_map_lookup_elem(&conns, &key);
		if (!state)
			return NULL;
	}
	struct conn *seen = bpf_map_lookup_elem(&call_conn, &tid);
	if (seen) {
		state->sock.fd = seen->fd;
		if (seen->family) {
			state->sock.family = seen->family;
			state->sock.sport = seen->sport;
			state->sock.dport = seen->dport;
			__builtin_memcpy(state->sock.saddr, seen->saddr, 16);
			__builtin_memcpy(state->sock.daddr, seen->daddr, 16);
		}
	}
	return state;
}

/*
 * Shared return helper for every library: `rc` is what the call returned. For calls with an
 * `outlen` (SSL_*_ex) rc == 1 means success and *outlen holds the count; otherwise rc > 0 is the
 * count. Copies the bytes out in records of MAX_CHUNK, numbered by the connection's seq.
 */
static __always_inline int capture_leave_key(__u64 key, long rc)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct call *c = bpf_map_lookup_elem(&calls, &key);
	if (!c)
		return 0;
	__u64 total = 0;
	if (c->outlen) {
		size_t done = 0;
		if (rc == 1 && bpf_probe_read_user(&done, sizeof(done), (void *)c->outlen) == 0)
			total = done;
	} else if ((int)rc > 0) {
		total = (__u64)(int)rc;
	}

	__u64 ckey = (id & 0xffffffff00000000ULL) ^ c->conn;
	struct conn_state *state = conn_state(ckey, tid);
	if (total > 0 && port_wanted(state)) {
		__u64 seq = 0;
		__u8 dir = c->dir & 1;
		if (state)
			seq = __sync_fetch_and_add(&state->seq[dir], total);
		__u64 limit = (__u64)MAX_CHUNKS * MAX_CHUNK;
		if (total > limit) {
			stat_add(STAT_OVERSIZED, 1);
			stat_add(STAT_OVERSIZED_BYTES, total - limit);
			total = limit;
		}
		struct emit_ctx ectx = {
			.call = c,
			.sock = state ? &state->sock : NULL,
			.total = total,
			.seq = seq,
			.ts = bpf_ktime_get_boot_ns(),
			.id = id,
			.uid = (__u32)bpf_get_current_uid_gid(),
		};
		__u32 n = (total + MAX_CHUNK - 1) / MAX_CHUNK;
		bpf_loop(n, emit_chunk, &ectx, 0);
	}
	bpf_map_delete_elem(&calls, &key);
	bpf_map_delete_elem(&call_conn, &tid);
	return 0;
}

static __always_inline int capture_leave(long rc)
{
	return capture_leave_key((__u32)bpf_get_current_pid_tgid(), rc);
}

/* OpenSSL (and BoringSSL): thin wrappers around the shared helpers. */

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter, void *ssl, const void *buf, int num)
{
	return capture_enter((__u64)ssl, buf, 0, DIR_WRITE, LIB_OPENSSL);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_write_leave)
{
	return capture_leave(PT_REGS_RC(ctx));
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{
	return capture_enter((__u64)ssl, buf, 0, DIR_READ, LIB_OPENSSL);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_read_leave)
{
	return capture_leave(PT_REGS_RC(ctx));
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, const void *buf, size_t num, size_t *written)
{
	return capture_enter((__u64)ssl, buf, written, DIR_WRITE, LIB_OPENSSL);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_write_ex_leave)
{
	return capture_leave(PT_REGS_RC(ctx));
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	return capture_enter((__u64)ssl, buf, readbytes, DIR_READ, LIB_OPENSSL);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_read_ex_leave)
{
	return capture_leave(PT_REGS_RC(ctx));
}

/* The TCP 4-tuple of socket fd `fd` of the current task: task->files->fdt->fd[fd]->private_data->sk. */
static __always_inline bool fd_tuple(struct conn *conn, int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return false;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) != 0 || !file)
		return false;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return false; /* a file read inside the call (node reads /etc/localtime) is no connection */
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return true;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return true;
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
		return true; /* a socket, but not TCP/IP (unix): the fd without a 4-tuple */
	}
	conn->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	conn->dport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	/* A connection already closed (TCP_CLOSE) has given its local port back (skc_num 0): no 4-tuple
	 * then, so the one remembered from earlier calls is kept rather than replaced by a wrong one. */
	if (!conn->sport || !conn->dport)
		return true;
	conn->family = (__u8)family;
	return true;
}

/*
 * The fd (and its 4-tuple) of the first socket syscall a thread issues inside a hooked call. Only
 * sockets count: any other fd (a file, a pipe) is ignored and the next syscall is looked at.
 */
static __always_inline int saw_fd(int fd)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 key = tid;
	if (!bpf_map_lookup_elem(&calls, &key))
		return 0;
	if (bpf_map_lookup_elem(&call_conn, &tid))
		return 0;
	struct conn fresh = {.fd = fd};
	if (!fd_tuple(&fresh, fd))
		return 0;
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


/* ------------------------------------------------------------------------------------------------
 * Other TLS libraries and new processes (src/ecaptureq/sources/tls/discover.py, hooks.py).
 * Thin wrappers around capture_enter()/capture_leave() above, plus an exec/mmap watcher with its own small
 * ring buffer.
 * ------------------------------------------------------------------------------------------------ */

/* GnuTLS: gnutls_record_send/recv(gnutls_session_t, buffer, size) -> ssize_t, the shape of SSL_write. */
SEC("uprobe")
int BPF_KPROBE(gnutls_send_enter, void *session, const void *buf)
{
	return capture_enter((__u64)session, buf, 0, DIR_WRITE, LIB_GNUTLS);
}

SEC("uprobe")
int BPF_KPROBE(gnutls_recv_enter, void *session, void *buf)
{
	return capture_enter((__u64)session, buf, 0, DIR_READ, LIB_GNUTLS);
}

/* NSS/NSPR: PR_Write/PR_Send/PR_Read/PR_Recv(PRFileDesc *fd, buf, amount, ...) serve every kind of
 * descriptor; only NSS's SSL layer has fd->methods->file_type == PR_DESC_LAYERED (plain sockets, files and
 * pipes are 1, 2, 3, 5). PRFileDesc starts with `const PRIOMethods *methods`, which starts with file_type. */
#define PR_DESC_LAYERED 4

static __always_inline bool nss_is_ssl(const void *fd)
{
	__u64 methods = 0;
	__s32 file_type = 0;
	if (bpf_probe_read_user(&methods, sizeof(methods), fd) != 0 || !methods)
		return false;
	if (bpf_probe_read_user(&file_type, sizeof(file_type), (const void *)methods) != 0)
		return false;
	return file_type == PR_DESC_LAYERED;
}

SEC("uprobe")
int BPF_KPROBE(nss_write_enter, void *fd, const void *buf)
{
	return nss_is_ssl(fd) ? capture_enter((__u64)fd, buf, 0, DIR_WRITE, LIB_NSS) : 0;
}

SEC("uprobe")
int BPF_KPROBE(nss_read_enter, void *fd, void *buf)
{
	return nss_is_ssl(fd) ? capture_enter((__u64)fd, buf, 0, DIR_READ, LIB_NSS) : 0;
}

/* Go crypto/tls, register ABI (amd64): (*Conn).Write/Read(c *Conn, b []byte) (n int, err error) take c in
 * RAX and b in RBX/RCX, return n in RAX; the goroutine's g is in R14. A goroutine may move between threads
 * while blocked in Read, so calls are keyed by the goroutine (g, mixed with the tgid: every Go heap starts at
 * the same address), not by thread. The return side is a uprobe on each RET instruction (a uretprobe would
 * rewrite the return address on Go's movable stack). */
static __always_inline __u64 go_key(struct pt_regs *ctx)
{
	return (bpf_get_current_pid_tgid() & 0xffffffff00000000ULL) ^ BPF_CORE_READ(ctx, r14);
}

SEC("uprobe")
int BPF_KPROBE(go_write_enter)
{
	const void *buf = (const void *)BPF_CORE_READ(ctx, bx);
	return capture_enter_key(go_key(ctx), BPF_CORE_READ(ctx, ax), buf, 0, DIR_WRITE, LIB_GOTLS);
}

SEC("uprobe")
int BPF_KPROBE(go_read_enter)
{
	const void *buf = (const void *)BPF_CORE_READ(ctx, bx);
	return capture_enter_key(go_key(ctx), BPF_CORE_READ(ctx, ax), buf, 0, DIR_READ, LIB_GOTLS);
}

/* The socket fd behind a *tls.Conn whose conn is a *net.TCPConn: c.conn (an interface: itab, data) ->
 * TCPConn.conn.fd (*netFD) -> netFD.pfd.Sysfd (after poll.FD's 16-byte fdMutex). fd_tuple() then checks
 * that the fd is a socket of this process; when it is not, the fd is reported unknown (-1), never wrong. */
static __always_inline void go_conn(struct conn *conn, __u64 tls_conn)
{
	__u64 tcp = 0, netfd = 0;
	__s64 sysfd = -1;
	conn->fd = -1;
	if (bpf_probe_read_user(&tcp, sizeof(tcp), (const void *)(tls_conn + 8)) != 0 || !tcp)
		return;
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (const void *)tcp) != 0 || !netfd)
		return;
	if (bpf_probe_read_user(&sysfd, sizeof(sysfd), (const void *)(netfd + 16)) != 0)
		return;
	if (sysfd < 0 || sysfd > 0x7fffffff)
		return;
	if (fd_tuple(conn, (int)sysfd))
		conn->fd = (__s32)sysfd;
}

SEC("uprobe")
int BPF_KPROBE(go_return)
{
	__u64 key = go_key(ctx);
	struct call *found = bpf_map_lookup_elem(&calls, &key);
	if (!found)
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct conn conn = {};
	go_conn(&conn, found->conn);
	if (conn.fd >= 0)
		bpf_map_update_elem(&call_conn, &tid, &conn, BPF_ANY);
	else
		bpf_map_delete_elem(&call_conn, &tid);
	return capture_leave_key(key, BPF_CORE_READ(ctx, ax));
}

/* New programs and libraries: every exec, and every mmap(PROT_EXEC) of a file userspace has not examined
 * yet (`known_files`, keyed by the inode and its superblock's device), are sent to userspace through
 * `lib_events`, which wakes it at once, so a new library or binary is hooked within milliseconds. */
struct super_block___libs {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct inode___libs {
	unsigned long i_ino;
	struct super_block___libs *i_sb;
} __attribute__((preserve_access_index));

struct file___libs {
	struct inode___libs *f_inode;
} __attribute__((preserve_access_index));

struct linux_binprm___libs {
	struct file___libs *file;
} __attribute__((preserve_access_index));

struct file_key {
	__u64 ino;
	__u32 dev;
	__u32 pad;
};

struct lib_event {
	__u64 ts_ns;             /* bpf_ktime_get_boot_ns() */
	__u64 ino;
	__u64 cgroup;            /* bpf_get_current_cgroup_id(): the cgroup v2 directory's inode */
	__u32 pid;
	__u32 dev;               /* kernel dev_t: major << 20 | minor */
	__u32 uid;
	__u8 kind;               /* 0 exec, 1 mmap of an executable mapping */
	__u8 pad[3];
	char comm[TASK_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);   /* sized by userspace before loading (hooks.LIB_EVENTS_BYTES) */
} lib_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct file_key);
	__type(value, __u8);
} known_files SEC(".maps");

static __always_inline int report_file(struct file___libs *file, __u8 kind)
{
	if (!file)
		return 0;
	struct file_key key = {
		.ino = BPF_CORE_READ(file, f_inode, i_ino),
		.dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev),
	};
	bool known = bpf_map_lookup_elem(&known_files, &key) != NULL;
	if (kind != 0 && known)
		return 0;
	struct lib_event *e = bpf_ringbuf_reserve(&lib_events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->ino = key.ino;
	e->dev = key.dev;
	e->cgroup = bpf_get_current_cgroup_id();
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->kind = kind;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	/* Wake userspace at once for a file to examine; the exec of a known program (kept for its cgroup)
	 * waits for the watcher's next timed drain, so exec-heavy workloads do not wake it each time. */
	bpf_ringbuf_submit(e, known ? BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP);
	return 0;
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(libs_exec, void *task, int old_pid, struct linux_binprm___libs *bprm)
{
	return report_file(BPF_CORE_READ(bprm, file), 0);
}

#define NR_mmap 9
#define PROT_EXEC 4

/* A BTF tracepoint: `regs` is read with plain loads (no helper call), which matters on every syscall exit. */
SEC("tp_btf/sys_exit")
int BPF_PROG(libs_sys_exit, struct pt_regs *regs, long ret)
{
	if (regs->orig_ax != NR_mmap || (ret < 0 && ret > -4096))
		return 0;
	if (!(regs->dx & PROT_EXEC))
		return 0;
	int fd = (int)regs->r8;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file___libs *file = NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) != 0)
		return 0;
	return report_file(file, 1);
}
