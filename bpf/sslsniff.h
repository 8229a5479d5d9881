/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The record sslsniff.bpf.c sends through its ring buffer, and the few kernel types it reads.
 *
 * The kernel types are declared here (not taken from a generated vmlinux.h) with
 * preserve_access_index, so libbpf relocates every field access against the running kernel's BTF
 * (CO-RE) and the compiled object does not depend on the kernel of the machine that built it.
 * The Python loader (src/ecaptureq/sources/tls/capture.py) mirrors struct ssl_event: keep both in step.
 */
#ifndef SSLSNIFF_H
#define SSLSNIFF_H

/* Tell bpf_tracing.h to use the kernel's pt_regs field names (di, si, ax), as with a vmlinux.h. */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
typedef unsigned long size_t;
#define true 1
#define false 0

/* Map types and flags from include/uapi/linux/bpf.h (stable ABI). */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum { BPF_ANY = 0, BPF_NOEXIST = 1 };
enum { BPF_RB_NO_WAKEUP = 1, BPF_RB_FORCE_WAKEUP = 2 };
enum { BPF_RB_AVAIL_DATA = 0 };

/* Wake the consumer only once this much is waiting; otherwise it finds records on its next timed poll. */
#define WAKEUP_BYTES (256 * 1024)

/* The ring buffer's size in the object; userspace sets the real size (--buffer-size) before loading. */
#define DEFAULT_RINGBUF_BYTES (256 * 1024 * 1024)

#define MAX_CHUNK 16384      /* plaintext bytes per ring-buffer record */
#define MAX_CHUNKS 4096      /* records per call: 64 MiB; beyond that the call counts as oversized */
#define OUTPUT_RETRIES 8     /* more tries of a record the ring buffer refused */
#define TASK_COMM_LEN 16

enum stat_index {
	STAT_CHUNKS = 0,         /* records written to the ring buffer */
	STAT_BYTES = 1,          /* plaintext bytes written to the ring buffer */
	STAT_DROP_CHUNKS = 2,    /* records lost: ring buffer full */
	STAT_DROP_BYTES = 3,     /* plaintext bytes in those records */
	STAT_OVERSIZED = 4,      /* calls larger than MAX_CHUNKS * MAX_CHUNK */
	STAT_OVERSIZED_BYTES = 5,/* bytes of those calls beyond the limit (lost, and counted in seq) */
	STAT_READ_ERRORS = 6,    /* records whose user buffer could not be read */
	STAT_MAX = 8,
};

/* Which TLS library a record comes from (struct ssl_event.lib). */
enum tls_lib {
	LIB_OPENSSL = 0,         /* OpenSSL / BoringSSL SSL_read/SSL_write(_ex) */
	LIB_GNUTLS = 1,
	LIB_NSS = 2,
	LIB_GOTLS = 3,
};

enum { DIR_WRITE = 0, DIR_READ = 1 };

/* flags */
#define EVENT_FLAG_UNREADABLE 1  /* the user buffer could not be read: data[] is zeros */

/*
 * One ring-buffer record: up to MAX_CHUNK bytes of the plaintext one call transferred.
 *
 * `seq` numbers the bytes of one connection and direction: the first byte of this record is byte
 * `seq` of everything the application wrote (or read) on `conn` in direction `dir`, lost bytes
 * included. A consumer that expected a smaller seq knows exactly how many bytes it lost, and where.
 */
struct ssl_event {
	__u64 ts_ns;             /* bpf_ktime_get_boot_ns() at the return of the call */
	__u64 conn;              /* the connection inside the process: SSL *, gnutls_session_t, ... */
	__u64 seq;               /* stream offset of data[0] in this connection and direction */
	__u32 pid;               /* tgid */
	__u32 tid;
	__u32 uid;
	__u32 len;               /* bytes in data[] */
	__s32 fd;                /* socket fd, -1 when unknown */
	__u16 sport;             /* local port, host order; 0 when unknown */
	__u16 dport;             /* remote port, host order */
	__u8 dir;                /* DIR_WRITE (egress) or DIR_READ (ingress) */
	__u8 family;             /* 0 unknown, 2 AF_INET, 10 AF_INET6 */
	__u8 flags;              /* EVENT_FLAG_* */
	__u8 lib;                /* enum tls_lib */
	__u8 saddr[16];          /* local address (IPv4 in the first 4 bytes) */
	__u8 daddr[16];          /* remote address */
	char comm[TASK_COMM_LEN];
	__u8 data[MAX_CHUNK];
};

#define SSL_EVENT_HEADER_SIZE __builtin_offsetof(struct ssl_event, data)

/* Filters applied in the kernel, so unwanted bytes are never copied. */
struct config {
	__u32 target_pid;        /* only this tgid when filter_pid */
	__u32 target_uid;        /* only this uid when filter_uid */
	__u32 exclude_pid;       /* never this tgid (the capturing process itself) */
	__u16 target_port;       /* only connections with this local or remote port when filter_port */
	__u8 filter_pid;
	__u8 filter_uid;
	__u8 filter_comm;
	__u8 filter_port;
	__u8 pad[2];
	char target_comm[TASK_COMM_LEN]; /* only this comm when filter_comm (NUL-padded) */
};

/* x86-64 struct pt_regs (arch/x86/include/asm/ptrace.h), relocated by CO-RE. */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs,
		flags, sp, ss;
} __attribute__((preserve_access_index));

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} __attribute__((preserve_access_index));

/* Only the fields read; names as in include/net/sock.h, found in anonymous members by libbpf. */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

#define S_IFMT 00170000
#define S_IFSOCK 0140000

struct inode {
	unsigned short i_mode;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
	void *private_data;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct task_struct {
	struct files_struct *files;
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

#endif
