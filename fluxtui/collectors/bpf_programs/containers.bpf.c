// Containers as the kernel sees them, for fluxtui/collectors/container_trace.py:
//
// - every cgroup created or removed (cgroup:cgroup_mkdir / cgroup_rmdir), with its id (what
//   bpf_get_current_cgroup_id() returns for a task in it) and its path, so that the id carried
//   by any other event resolves to a container the moment the container exists, however short
//   it lives;
// - the container runtime's own set-up: a process whose exec was of a runtime executable that
//   user space verified (package-owned, unmodified; its device and inode are in `runtimes`) is
//   "in set-up", and so is every process it forks, until the exec that starts the container's
//   entrypoint. An exec of an unlinked file (runc re-executes itself from a memfd) keeps a
//   process in set-up; any other exec ends it. Each change is sent (FX_SETUP_*), so user space
//   can tell the runtime's unshare/mount/pivot_root from the workload's;
// - for every setns(fd, ...) outside the host's mount namespace, the inode number of the
//   namespace file the fd holds, read when the call is made (FX_SETNS): whether a container
//   joined the host's namespaces is known even when it has exited before its event is
//   handled (nsenter in a --pid=host container).
//
// Offsets into kernel structures come from the running kernel's BTF (`config`).
// RING_PAGES (ring buffer size, fixed at load) is given with -D by the loader.
#include "fluxtui_events.h"

#define FX_CG_PATH_LEN 256

enum {
    FX_CG_MKDIR = 1,
    FX_CG_RMDIR = 2,
    FX_SETUP_BEGIN = 3,     /* exec of a verified runtime executable */
    FX_SETUP_FORK = 4,      /* forked by a process in set-up */
    FX_SETUP_KEEP = 5,      /* exec of an unlinked file or a runtime by a process in set-up */
    FX_SETUP_END = 6,       /* any other exec by a process in set-up */
    FX_SETNS = 7,           /* setns: id is the inode number of the fd's file, level the tid */
};

struct fx_cg_config {
    u64 ns_per_tick;        /* 0: not configured yet, everything is ignored */
    u32 task_group_leader;
    u32 task_start_boottime;
    u32 task_tgid;
    u32 task_mm;
    u32 mm_exe_file;
    u32 file_f_inode;
    u32 inode_i_ino;
    u32 inode_i_sb;
    u32 inode_i_nlink;
    u32 sb_s_dev;
    u32 task_nsproxy;
    u32 nsproxy_mnt_ns;
    u32 mnt_ns_inum;        /* mnt_namespace.ns.inum */
    u32 host_mnt_ns;        /* inode number of fluxtui's own mount namespace */
    u32 task_files;
    u32 files_fdt;
    u32 fdtable_fd;
    u32 fdtable_max_fds;
};

struct fx_cg_event {
    u32 kind;
    u32 level;              /* mkdir: depth of the cgroup; setup: the parent's tgid (fork) */
    u64 id;                 /* cgroup id; setup: the process's current cgroup id */
    u32 tgid;
    u32 root;               /* hierarchy id (mkdir/rmdir) */
    u64 start_ticks;
    u64 ktime_ns;
    char path[FX_CG_PATH_LEN];
};

struct fx_runtime_key {
    u32 dev;                /* the kernel's s_dev: major << 20 | minor */
    u32 pad;
    u64 ino;
};

BPF_RINGBUF_OUTPUT(events, RING_PAGES);
BPF_ARRAY(dropped, u64, 1);
BPF_ARRAY(config, struct fx_cg_config, 1);
BPF_HASH(runtimes, struct fx_runtime_key, u8, 64);
BPF_HASH(setup, u32, u8, 16384);            /* tgid of each process in set-up */

static __always_inline u64 rd64(u64 base, u32 off)
{
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)(base + off));
    return v;
}

static __always_inline u32 rd32(u64 base, u32 off)
{
    u32 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)(base + off));
    return v;
}

static __always_inline void count_drop(void)
{
    int zero = 0;
    u64 *count = dropped.lookup(&zero);
    if (count)
        __sync_fetch_and_add(count, 1);
}

static __always_inline struct fx_cg_config *cg_cfg(void)
{
    int zero = 0;
    struct fx_cg_config *cfg = config.lookup(&zero);
    return cfg && cfg->ns_per_tick ? cfg : 0;
}

static __always_inline u64 start_ticks_of(struct fx_cg_config *cfg, u64 task)
{
    u64 leader = rd64(task, cfg->task_group_leader);
    return rd64(leader, cfg->task_start_boottime) / cfg->ns_per_tick;
}

static __always_inline void send(u32 kind, u32 tgid, u64 start, u32 level)
{
    struct fx_cg_event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        count_drop();
        return;
    }
    e->kind = kind;
    e->level = level;
    e->id = bpf_get_current_cgroup_id();
    e->tgid = tgid;
    e->root = 0;
    e->start_ticks = start;
    e->ktime_ns = bpf_ktime_get_boot_ns();
    e->path[0] = 0;
    events.ringbuf_submit(e, 0);
}

static __always_inline void cgroup_change(u32 kind, int root, int level, u64 id, void *ctx,
                                          u32 data_loc)
{
    struct fx_cg_event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        count_drop();
        return;
    }
    e->kind = kind;
    e->level = level;
    e->id = id;
    e->tgid = bpf_get_current_pid_tgid() >> 32;
    e->root = root;
    e->start_ticks = 0;
    e->ktime_ns = bpf_ktime_get_boot_ns();
    bpf_probe_read_kernel_str(e->path, sizeof(e->path), (char *)ctx + (data_loc & 0xFFFF));
    events.ringbuf_submit(e, 0);
}

TRACEPOINT_PROBE(cgroup, cgroup_mkdir)
{
    cgroup_change(FX_CG_MKDIR, args->root, args->level, args->id, args, args->data_loc_path);
    return 0;
}

TRACEPOINT_PROBE(cgroup, cgroup_rmdir)
{
    cgroup_change(FX_CG_RMDIR, args->root, args->level, args->id, args, args->data_loc_path);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    struct fx_cg_config *cfg = cg_cfg();
    if (!cfg)
        return 0;
    u64 task = (u64)bpf_get_current_task();
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u64 file = rd64(rd64(task, cfg->task_mm), cfg->mm_exe_file);
    u64 inode = file ? rd64(file, cfg->file_f_inode) : 0;
    if (!inode)
        return 0;
    struct fx_runtime_key key = {};
    key.dev = rd32(rd64(inode, cfg->inode_i_sb), cfg->sb_s_dev);
    key.ino = rd64(inode, cfg->inode_i_ino);
    u8 one = 1;
    u8 *already = setup.lookup(&tgid);
    /* An exec in another mount namespace than the host's is the entrypoint's: runc has
     * pivoted into the container's root (or joined it, for `docker exec`). It ends the set-up,
     * whatever the file is (a host runc mounted into the container included). */
    u64 mnt_ns = rd64(rd64(task, cfg->task_nsproxy), cfg->nsproxy_mnt_ns);
    bool host_ns = mnt_ns && rd32(mnt_ns, cfg->mnt_ns_inum) == cfg->host_mnt_ns;
    if (already && !host_ns) {
        setup.delete(&tgid);
        send(FX_SETUP_END, tgid, start_ticks_of(cfg, task), 0);
        return 0;
    }
    if (runtimes.lookup(&key)) {
        /* A runtime re-executing itself while in set-up (runc init) goes on with it, wherever
         * its cgroup already is; only a fresh start is judged by where it came from. */
        if (already) {
            send(FX_SETUP_KEEP, tgid, start_ticks_of(cfg, task), 0);
            return 0;
        }
        setup.update(&tgid, &one);
        send(FX_SETUP_BEGIN, tgid, start_ticks_of(cfg, task), 0);
        return 0;
    }
    if (!already)
        return 0;
    if (rd32(inode, cfg->inode_i_nlink) == 0) {
        send(FX_SETUP_KEEP, tgid, start_ticks_of(cfg, task), 0);
        return 0;
    }
    setup.delete(&tgid);
    send(FX_SETUP_END, tgid, start_ticks_of(cfg, task), 0);
    return 0;
}

/* A new process forked by one in set-up is in set-up; a new thread is the same process. */
RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    struct fx_cg_config *cfg = cg_cfg();
    if (!cfg)
        return 0;
    u64 parent = ctx->args[0];
    u64 child = ctx->args[1];
    u32 ptgid = rd32(parent, cfg->task_tgid);
    if (!setup.lookup(&ptgid))
        return 0;
    u32 ctgid = rd32(child, cfg->task_tgid);
    if (ctgid == ptgid)
        return 0;
    u8 one = 1;
    setup.update(&ctgid, &one);
    /* The child's group leader is itself; its start time is set before this tracepoint. */
    u64 start = rd64(child, cfg->task_start_boottime) / cfg->ns_per_tick;
    send(FX_SETUP_FORK, ctgid, start, ptgid);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tgid = id >> 32;
    if ((u32)id == tgid)
        setup.delete(&tgid);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_setns)
{
    struct fx_cg_config *cfg = cg_cfg();
    if (!cfg)
        return 0;
    int fd = (int)args->fd;
    if (fd < 0)
        return 0;
    u64 task = (u64)bpf_get_current_task();
    /* Only from another mount namespace than the host's: every container has its own (host
     * processes' setns are judged without a container). */
    u64 mnt_ns = rd64(rd64(task, cfg->task_nsproxy), cfg->nsproxy_mnt_ns);
    if (!mnt_ns || rd32(mnt_ns, cfg->mnt_ns_inum) == cfg->host_mnt_ns)
        return 0;
    u64 fdt = rd64(rd64(task, cfg->task_files), cfg->files_fdt);
    if (!fdt || (u32)fd >= rd32(fdt, cfg->fdtable_max_fds))
        return 0;
    u64 file = rd64(rd64(fdt, cfg->fdtable_fd), (u32)fd * sizeof(u64));
    u64 inode = file ? rd64(file, cfg->file_f_inode) : 0;
    if (!inode)
        return 0;
    struct fx_cg_event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        count_drop();
        return 0;
    }
    u64 id = bpf_get_current_pid_tgid();
    e->kind = FX_SETNS;
    e->level = (u32)id;
    e->id = rd64(inode, cfg->inode_i_ino);
    e->tgid = id >> 32;
    e->root = 0;
    e->start_ticks = start_ticks_of(cfg, task);
    e->ktime_ns = bpf_ktime_get_boot_ns();
    e->path[0] = 0;
    events.ringbuf_submit(e, 0);
    return 0;
}
