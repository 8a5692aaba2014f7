/* Structures shared by fluxtui's BPF programs and user space.
 *
 * Compiled by BCC (kernel side) and by gcc in tests (tests/test_syscalls_bpf.py checks that the
 * ctypes mirrors in fluxtui/collectors/syscalls.py have the same sizes and offsets). Only fixed
 * width types, so the layout is the same for both compilers.
 */
#ifndef FLUXTUI_EVENTS_H
#define FLUXTUI_EVENTS_H

#include <linux/types.h>

#define FX_MAX_NR 1024          /* syscall numbers at or above this are counted as FX_NR_OTHER */
/* A 32-bit syscall (TS_COMPAT: int 0x80 or a 32-bit process on a 64-bit kernel) is counted as
 * FX_MAX_NR + its 32-bit number, so it never passes for the 64-bit syscall of that number. */
#define FX_NR_OTHER 0xFFFE      /* out-of-range or negative syscall number */
#define FX_NR_START 0xFFFF      /* "previous syscall" of a thread's first traced syscall */

#define FX_COMM_LEN 16
#define FX_STR_LEN 128          /* string arguments of high-signal syscalls */
#define FX_FILENAME_LEN 256
#define FX_MAX_ARGS 8           /* argv entries kept for an exec */
#define FX_ARG_LEN 64
#define FX_PATH_PARTS 24        /* steps walked up the executable's path, leaf first */
#define FX_PART_LEN 48

/* Event kinds in struct fx_header.kind. */
#define FX_EV_SYSCALL 1         /* a high-signal syscall was entered (struct fx_syscall_event) */
#define FX_EV_EXEC 2            /* an exec succeeded (struct fx_exec_event) */
#define FX_EV_EXIT 3            /* the last thread of a process exited (struct fx_header only) */
#define FX_EV_CRED 4            /* real uid or gid changed after a set*id call: args[0..3] are
                                   old uid, old gid, new uid, new gid (struct fx_syscall_event) */

/* Per-syscall capture classes, the low byte of a syscall_desc entry. Bits 8-10 say which of
 * arguments 0-2 are user strings to copy into str[0..2]; bits 12-14 the argv argument of exec. */
#define FX_CAP_NONE 0
#define FX_CAP_EVENT 1          /* emit an FX_EV_SYSCALL event */
#define FX_CAP_EXEC 2           /* keep argv until sched_process_exec reports success */
#define FX_CAP_CRED 3           /* emit the call and, on the thread's next syscall, FX_EV_CRED */
#define FX_CAP_CAPSET 4         /* emit the call with the capability sets read from user memory */
#define FX_CAP_PTRACE 5         /* emit only requests that take or change another process
                                   (a debugger's per-step requests are counted, not sent) */
#define FX_CAP_BPF 6            /* emit only commands that load or attach a program (map
                                   lookups are counted, not sent) */
#define FX_CAP_OPEN_PROC 7      /* open/openat/openat2: emit only opens for writing of a
                                   path that starts with "/proc/" or names a release_agent
                                   (path argument: desc >> 12; its flags follow it, or, with
                                   bit 15, are the first field of the struct after it) */

/* Indices of the per-CPU `dropped` array: what could not be recorded, never silently. */
#define FX_DROP_COUNTS 0        /* syscalls not counted: count map full */
#define FX_DROP_EVENTS 1        /* events lost: ring buffer full */
#define FX_DROP_THREAD 2        /* syscalls not counted: no per-thread state (allocation failed) */
#define FX_DROP_ARGV 3          /* exec events sent without argv (stash allocation failed) */
#define FX_RETRIED 4            /* not a drop: ring buffer writes that failed and were tried again */
#define FX_DROP_SLOTS 5

/* Flags in fx_exec_event.flags. */
#define FX_EXEC_NO_ARGV 1       /* argv could not be captured */
#define FX_EXEC_ARGV_TRUNCATED 2 /* more than FX_MAX_ARGS arguments */
#define FX_EXEC_PATH_TRUNCATED 4 /* the executable's path needs more than FX_PATH_PARTS steps */
#define FX_EXEC_NAME_TRUNCATED 8 /* a name of the path is longer than FX_PART_LEN - 1 bytes
                                   (bit i of cut_parts says which step) */
#define FX_EXEC_ANON_FILE 16    /* the file has no place in a directory tree: its dentry is its
                                   own parent (memfd and other anonymous files), whatever its name */
#define FX_EXEC_STDIO_INET 32   /* a standard stream (fd 0-2) is an AF_INET/AF_INET6 socket (in
                                   flags: the exec'd process's; in parent_flags: its parent's) */

/* Run-time configuration, one element of the `config` array, written by user space. Offsets of
 * kernel structure members come from the running kernel's BTF, not from the headers BCC
 * compiles against (those may belong to another kernel version). */
struct fx_config {
    __u32 self_tgid;            /* fluxtui itself: not traced, so it does not observe itself */
    __u32 gen;                  /* which of the two count maps is written; flipped on drain */
    __u64 ns_per_tick;          /* 1e9 / USER_HZ, to turn start_boottime into clock ticks */
    __u32 task_group_leader;
    __u32 task_start_boottime;
    __u32 task_real_parent;
    __u32 task_tgid;
    __u32 task_comm;
    __u32 task_mm;
    __u32 task_cred;
    __u32 cred_euid;
    __u32 mm_exe_file;
    __u32 file_f_path;
    __u32 path_mnt;
    __u32 path_dentry;
    __u32 dentry_d_parent;
    __u32 dentry_d_name;
    __u32 qstr_name;
    __u32 mount_mnt;
    __u32 mount_mnt_parent;
    __u32 mount_mnt_mountpoint;
    __u32 vfsmount_mnt_root;
    __u32 qstr_len;
    __u32 task_thread_status;   /* task_struct.thread_info.status (x86) */
    __u32 compat_mask;          /* TS_COMPAT in that status; 0 when this kernel has none */
    __u32 task_files;           /* the standard streams at exec: files->fdt->fd[0..2] */
    __u32 files_fdt;
    __u32 fdtable_fd;
    __u32 fdtable_max_fds;
    __u32 file_f_inode;
    __u32 inode_i_mode;
    __u32 file_private_data;
    __u32 socket_sk;
    __u32 sock_family;          /* sock.__sk_common.skc_family */
    __u32 wake_mask;            /* wake user space each (wake_mask + 1) count map keys inserted
                                 * on a CPU (syscalls.bpf.c, "Fill level") */
};

/* Key of the count maps: one entry per process and syscall bigram. Per-syscall counts are the
 * sums over `prev`, so a syscall costs one map update, not two. */
struct fx_count_key {
    __u32 tgid;
    __u16 prev;                 /* previous syscall of the same thread, FX_NR_START if none */
    __u16 nr;
    __u64 start_ticks;          /* with tgid, the process identity that survives PID reuse */
};

struct fx_header {
    __u64 boot_ns;              /* bpf_ktime_get_boot_ns() when the event happened */
    __u64 start_ticks;
    __u64 cgroup_id;            /* cgroup v2 id (the root's when only v1 is mounted) */
    __u32 tgid;
    __u32 tid;
    __u32 uid;
    __u32 gid;
    __u32 kind;                 /* FX_EV_* */
    __s32 nr;                   /* syscall number, -1 for exec/exit */
    char comm[FX_COMM_LEN];
};

struct fx_syscall_event {
    struct fx_header h;
    __u64 args[6];
    __u64 aux[2];               /* capset: effective and permitted sets (low | high << 32) */
    char str[3][FX_STR_LEN];    /* user strings of arguments 0-2 when the syscall has them */
};

/* An exec, sent with only the bytes it uses: the fixed fields, then `data_len` bytes of data:
 * `argc` argv entries (FX_ARG_LEN bytes each), the executable's `exe_parts` path steps (leaf
 * first, "" = a mount crossing; FX_PART_LEN bytes each), the parent's `parent_exe_parts` steps,
 * then the filename as passed to exec, NUL-terminated. Each entry and step is a NUL-terminated
 * string (bytes after the NUL are left over, not meant). A typical exec is about 600 bytes
 * instead of the 3 KiB a record with room for every string at its longest would take. */
#define FX_EXEC_DATA_LEN (FX_MAX_ARGS * FX_ARG_LEN + 2 * FX_PATH_PARTS * FX_PART_LEN \
                          + FX_FILENAME_LEN)

struct fx_exec_event {
    struct fx_header h;
    __u32 ppid;
    __u32 old_tid;              /* the thread that called exec (differs from tid after de_thread) */
    __u32 euid;
    __u32 argc;                 /* argv entries in data */
    __u32 flags;                /* FX_EXEC_* */
    __u32 exe_parts;            /* path steps of the executable in data */
    __s32 exec_nr;              /* execve or execveat */
    __u32 cut_parts;            /* bit i: the name of step i was cut to FX_PART_LEN - 1 bytes */
    char parent_comm[FX_COMM_LEN];
    /* The parent (real_parent) when the exec succeeded, read in the kernel: its process start
     * time and its executable, so the parent is known even after it exited or exec'd again. */
    __u64 parent_start_ticks;
    __u32 parent_exe_parts;
    __u32 parent_cut_parts;
    __u32 parent_flags;         /* FX_EXEC_* flags of the parent's path */
    __u32 data_len;             /* bytes of data sent */
    char data[FX_EXEC_DATA_LEN];
};

/* connect_trace.bpf.c: TCP connect attempts with the process that made them, read in the kernel
 * when connect() runs, and their outcomes. The executable of a process is sent once (an
 * FX_CONN_PROCESS record) the first time it connects, not with every attempt. */
#define FX_CONN_ATTEMPT 1       /* struct fx_connect_event: CLOSE -> SYN_SENT, in the process */
#define FX_CONN_ESTABLISHED 2   /* struct fx_connect_event, only kind/ts_ns/sk set */
#define FX_CONN_FAILED 3        /* SYN_SENT -> CLOSE: refused, timed out or abandoned */
#define FX_CONN_PROCESS 4       /* struct fx_connect_process */

struct fx_connect_event {
    __u32 kind;                 /* FX_CONN_* */
    __u32 tgid;
    __u64 ts_ns;                /* bpf_ktime_get_boot_ns() */
    __u64 sk;                   /* the socket's address: pairs an attempt with its outcome */
    __u64 start_ticks;
    __u64 parent_start_ticks;
    __u32 tid;
    __u32 ppid;
    __u32 uid;
    __u16 family;
    __u16 dport;
    __u8 daddr[16];
    char comm[FX_COMM_LEN];
};

struct fx_connect_process {
    __u32 kind;                 /* FX_CONN_PROCESS */
    __u32 tgid;
    __u64 start_ticks;
    __u32 exe_parts;
    __u32 cut_parts;
    __u32 exe_flags;
    __u32 pad;
    char exe[FX_PATH_PARTS][FX_PART_LEN];
};

#endif
