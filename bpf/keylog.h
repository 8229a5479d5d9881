/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The record keylog.bpf.c sends through its ring buffer, the structure offsets userspace gives it, and
 * the few types it needs. src/ecaptureq/sources/tls/keylog.py mirrors struct keylog_event and struct
 * keylog_config: keep them in step.
 */
#ifndef KEYLOG_H
#define KEYLOG_H

/* Tell bpf_tracing.h to use the kernel's pt_regs field names (di, si, ax), as with a vmlinux.h. */
#define __VMLINUX_H__

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef signed char __s8;
typedef short __s16;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;

enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum { BPF_ANY = 0 };

#define TASK_COMM_LEN 16
#define RANDOM_SIZE 32           /* SSL3_RANDOM_SIZE */
#define MASTER_KEY_SIZE 48       /* SSL3_MASTER_SECRET_SIZE */
#define MD_SIZE 64               /* EVP_MAX_MD_SIZE: each TLS 1.3 secret slot in struct ssl_st */
/*
 * The TLS 1.3 secrets of struct ssl_st (OpenSSL 1.1.1 and 3.0, ssl/ssl_local.h) are consecutive
 * EVP_MAX_MD_SIZE arrays: early_secret, handshake_secret, master_secret, resumption_master_secret,
 * client_finished_secret, server_finished_secret, server_finished_hash, handshake_traffic_hash,
 * client_app_traffic_secret, server_app_traffic_secret, exporter_master_secret. The record carries
 * the ten slots from handshake_secret to exporter_master_secret.
 */
#define TLS13_SLOTS 10

/* Where to read, per OpenSSL build; written by userspace into the `config` map before attaching. */
struct keylog_config {
	__u32 ssl_version;       /* int version in struct ssl_st */
	__u32 client_random;     /* s3.client_random in struct ssl_st */
	__u32 session;           /* SSL_SESSION *session in struct ssl_st */
	__u32 handshake_secret;  /* handshake_secret in struct ssl_st */
	__u32 master_key;        /* master_key in struct ssl_session_st */
	__u32 session_cipher;    /* const SSL_CIPHER *cipher in struct ssl_session_st */
	__u32 cipher_id;         /* uint32_t id in struct ssl_cipher_st */
	__u32 exclude_pid;       /* never this tgid (the capturing process) */
	__u32 target_pid;        /* only this tgid when not 0 */
	__u32 pad;
};

struct keylog_event {
	__u64 ssl;               /* the SSL * */
	__u32 pid;
	__u32 tid;
	__s32 version;           /* ssl->version: 0x0303 TLS 1.2, 0x0304 TLS 1.3 */
	__u32 cipher_id;         /* session->cipher->id, e.g. 0x03001302 */
	__u32 flags;             /* bit 0: a read failed (the record is incomplete) */
	__u32 pad;
	char comm[TASK_COMM_LEN];
	__u8 client_random[RANDOM_SIZE];
	__u8 master_key[MASTER_KEY_SIZE];
	__u8 tls13[TLS13_SLOTS * MD_SIZE];
};

/* x86-64 struct pt_regs (arch/x86/include/asm/ptrace.h), relocated by CO-RE. */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs,
		flags, sp, ss;
} __attribute__((preserve_access_index));

#endif
