/* fluxtui's syscall capture, loaded by fluxtui/collectors/syscalls.py with BCC.
 *
 * The raw sys_enter tracepoint counts every syscall in the kernel, per process and syscall bigram
 * (previous syscall of the same thread -> this one); nothing crosses to user space per syscall.
 * A run of the same bigram is counted in the thread's own storage and added to the shared map
 * when the run ends, so a tight loop costs no map update. User space drains the maps every tick
 * (see "Draining" below). A ring buffer carries only high-signal events (exec, ptrace, set*id,
 * mount, module loads, bpf, memfd_create, namespaces, process exit) with their arguments.
 *
 * Draining: two count maps sit in the `counts` array of maps and `config.gen` says which one is
 * written. User space flips `gen`, then rewrites a slot of `counts`: an update of an array of
 * maps returns only after every running BPF program has finished (synchronize_rcu), so nothing
 * writes the old map any more and it is read and emptied without losing an increment.
 *
 * A 32-bit syscall (TS_COMPAT in the thread's status: int 0x80, or a 32-bit program) is counted
 * as FX_MAX_NR + its 32-bit number, never taken for the 64-bit syscall with the same number.
 *
 * Fill level: every key inserted into a count map is counted in `inserted[gen]` (per CPU, off
 * the hot path: only a new key pays it). User space watches it and flips before the map fills,
 * not only once a tick, so a storm of new processes finds room. It need not poll for that: each
 * (config.wake_mask + 1)th key inserted on a CPU reserves and discards an empty ring buffer
 * record with a forced wake-up, which wakes its reader like any record, so the map cannot gain
 * more than (wake_mask + 1) keys per CPU unseen.
 *
 * Hot path: per syscall two helper calls (the BTF task, its task storage), two array lookups
 * the verifier inlines (config, syscall_desc) and, while a run continues, one compare and an
 * increment; the thread status and tgid are plain loads from the BTF task at offsets given at
 * compile time (-DFX_OFF_THREAD_STATUS, -DFX_OFF_TGID, from the kernel's BTF).
 *
 * Compile-time sizes (-D): FX_COUNT_ENTRIES, FX_RINGBUF_PAGES; FX_HAVE_GROUP_DEAD when the
 * kernel's sched_process_exit has that field. Everything else arrives through `config` and
 * `syscall_desc` at run time.
 */
#include "fluxtui_events.h"

#ifndef FX_COUNT_ENTRIES
#define FX_COUNT_ENTRIES 65536
#endif
#ifndef FX_RINGBUF_PAGES
#define FX_RINGBUF_PAGES 64
#endif
#ifndef FX_OFF_THREAD_STATUS
#error "FX_OFF_THREAD_STATUS (offset of task_struct.thread_info.status) is required"
#endif
#ifndef FX_OFF_TGID
#error "FX_OFF_TGID (offset of task_struct.tgid) is required"
#endif

#define FX_TH_INIT 1
#define FX_TH_CRED_PENDING 2

struct fx_thread {
    u64 start_ticks;            /* of the process (group leader), cached at the first syscall */
    u64 run_count;              /* syscalls in the current run of one bigram, not yet in a map */
    u64 run_id;                 /* the run's RUN_ID(gen, prev, nr): one compare per syscall */
    u64 cred_ids;               /* uid | gid << 32 when the last set*id call was entered */
    u16 prev;
    u16 flags;
    s32 cred_nr;
};

#define RUN_ID(gen, prev, nr) ((u64)(u32)(gen) | (u64)(prev) << 32 | (u64)(nr) << 48)
#define RUN_PREV(id) ((u16)((id) >> 32))
#define RUN_NR(id) ((u16)((id) >> 48))

struct fx_exec_stash {
    u32 valid;
    u32 argc;
    u32 flags;
    s32 nr;
    char argv[FX_MAX_ARGS][FX_ARG_LEN];
};

BPF_ARRAY(config, struct fx_config, 1);
/* What to capture of each syscall (0: only counted), indexed by the counted number: 64-bit
 * calls at their number, 32-bit ones at FX_MAX_NR + theirs. One map, so the lookup is one the
 * verifier inlines (a choice between two maps at one call site is a real helper call). */
BPF_ARRAY(syscall_desc, u32, 2 * FX_MAX_NR);
BPF_PERCPU_ARRAY(dropped, u64, FX_DROP_SLOTS);
BPF_PERCPU_ARRAY(inserted, u64, 2);        /* keys inserted into counts_a / counts_b */
struct fx_path_scratch {
    char p[2 * FX_STR_LEN];     /* a path read whole; twice as long so any suffix offset fits */
};
BPF_PERCPU_ARRAY(path_scratch, struct fx_path_scratch, 1);
/* An exec event is built here, then only its used bytes are sent (ringbuf_output). The paths
 * are walked into fixed rows first (a walk at a variable offset is too much for the verifier),
 * then their used rows are copied after the argv entries. */
BPF_PERCPU_ARRAY(exec_out, struct fx_exec_event, 1);
struct fx_exec_paths {
    char exe[FX_PATH_PARTS][FX_PART_LEN];
    char parent_exe[FX_PATH_PARTS][FX_PART_LEN];
};
BPF_PERCPU_ARRAY(exec_paths, struct fx_exec_paths, 1);
BPF_TASK_STORAGE(threads, struct fx_thread);
BPF_TASK_STORAGE(exec_stash, struct fx_exec_stash);
BPF_TABLE("hash", struct fx_count_key, u64, counts_a, FX_COUNT_ENTRIES);
BPF_TABLE("hash", struct fx_count_key, u64, counts_b, FX_COUNT_ENTRIES);
BPF_ARRAY_OF_MAPS(counts, "counts_a", 2);
BPF_RINGBUF_OUTPUT(events, FX_RINGBUF_PAGES);
/* A small second ring buffer, written only when `events` refuses a record (see FX_RING_TRIES):
 * a buffer with a lock of its own, which also takes a burst when `events` is full. */
BPF_RINGBUF_OUTPUT(spill, 16);

static __always_inline void count_drop(u32 slot, u64 n)
{
    u64 *v = dropped.lookup(&slot);
    if (v)
        *v += n;                /* per-CPU slot: no other writer */
}

#include "fluxtui_task.h"

/* Since Linux 6.15 the ring buffer's lock is a resilient spinlock (rqspinlock): a write can fail
 * while there is room, not only when the buffer is full. Measured here: about one write in
 * 2,000 to 8,000 failed with the buffer far from full (0.15 MiB of 4 MiB), each failure within
 * 0.5 us (not a lock timeout); retrying nearly always succeeds, yet 8 tries in a row still
 * failed for 6 events in 87,000. So a refused record is tried FX_RING_TRIES times on `events`,
 * then on `spill`, a ring buffer with a lock of its own. A full buffer fails each try at once.
 * Retries are counted (FX_RETRIED), and so is what is lost after all of them (FX_DROP_EVENTS). */
#define FX_RING_TRIES 4

/* `size` is a constant at each (inlined) call, as ringbuf_reserve needs. */
static __always_inline void *ring_reserve(u64 size)
{
    void *rec = NULL;
#pragma unroll
    for (int i = 0; i < 2 * FX_RING_TRIES && !rec; i++) {
        if (i)
            count_drop(FX_RETRIED, 1);
        if (i < FX_RING_TRIES)
            rec = events.ringbuf_reserve(size);
        else
            rec = spill.ringbuf_reserve(size);
    }
    if (!rec)
        count_drop(FX_DROP_EVENTS, 1);
    return rec;
}

/* Wakes the ring buffer's reader with no record (see "Fill level"). A full ring buffer has
 * woken it already. */
static __always_inline void wake_reader(void)
{
    void *rec = events.ringbuf_reserve(8);
    if (rec)
        events.ringbuf_discard(rec, BPF_RB_FORCE_WAKEUP);
}

/* Start time of the current process in clock ticks, as in field 22 of /proc/PID/stat. */
static __always_inline u64 process_start_ticks(struct fx_config *cfg)
{
    return task_start_ticks(cfg, bpf_get_current_task());
}

static __always_inline void fill_header(struct fx_header *h, u32 kind, s32 nr, u64 start_ticks)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 uid_gid = bpf_get_current_uid_gid();
    h->boot_ns = bpf_ktime_get_boot_ns();
    h->start_ticks = start_ticks;
    h->cgroup_id = bpf_get_current_cgroup_id();
    h->tgid = pid_tgid >> 32;
    h->tid = (u32)pid_tgid;
    h->uid = (u32)uid_gid;
    h->gid = uid_gid >> 32;
    h->kind = kind;
    h->nr = nr;
    bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Add the thread's pending run to the count map being written now. */
static __always_inline void flush_run(struct fx_config *cfg, struct fx_thread *th, u32 tgid)
{
    u64 n = th->run_count;
    th->run_count = 0;
    if (!n)
        return;
    u32 gen = cfg->gen & 1;     /* the map written now: the other may be being drained */
    void *map = counts.lookup(&gen);
    if (!map) {
        count_drop(FX_DROP_COUNTS, n);
        return;
    }
    struct fx_count_key key = {};
    key.tgid = tgid;
    key.prev = RUN_PREV(th->run_id);
    key.nr = RUN_NR(th->run_id);
    key.start_ticks = th->start_ticks;
    u64 *v = bpf_map_lookup_elem(map, &key);
    if (v) {
        __sync_fetch_and_add(v, n);
        return;
    }
    if (bpf_map_update_elem(map, &key, &n, BPF_NOEXIST) == 0) {
        u64 *ins = inserted.lookup(&gen);
        if (ins) {
            *ins += 1;          /* per-CPU slot: no other writer */
            if (!(*ins & cfg->wake_mask))
                wake_reader();
        }
        return;
    }
    v = bpf_map_lookup_elem(map, &key);     /* another CPU inserted it first */
    if (v) {
        __sync_fetch_and_add(v, n);
        return;
    }
    count_drop(FX_DROP_COUNTS, n);
}

/* An event with up to four integer arguments and no strings (cred changes, process exit). */
static __always_inline void emit_plain(u32 kind, s32 nr, u64 start_ticks,
                                       u64 a0, u64 a1, u64 a2, u64 a3)
{
    struct fx_syscall_event *ev = ring_reserve(sizeof(struct fx_syscall_event));
    if (!ev)
        return;
    fill_header(&ev->h, kind, nr, start_ticks);
    ev->args[0] = a0;
    ev->args[1] = a1;
    ev->args[2] = a2;
    ev->args[3] = a3;
    ev->args[4] = 0;
    ev->args[5] = 0;
    ev->aux[0] = 0;
    ev->aux[1] = 0;
    ev->str[0][0] = 0;
    ev->str[1][0] = 0;
    ev->str[2][0] = 0;
    events.ringbuf_submit(ev, 0);
}

/* After a set*id/capset call: report the change of real uid or gid it made, if any. */
static __always_inline void check_cred(struct fx_thread *th)
{
    th->flags &= ~FX_TH_CRED_PENDING;
    u64 now = bpf_get_current_uid_gid();
    if (now == th->cred_ids)
        return;
    emit_plain(FX_EV_CRED, th->cred_nr, th->start_ticks, (u32)th->cred_ids,
               th->cred_ids >> 32, (u32)now, now >> 32);
}

static __always_inline void emit_syscall(u64 *a, struct fx_thread *th, u16 nr, u32 desc)
{
    struct fx_syscall_event *ev = ring_reserve(sizeof(struct fx_syscall_event));
    if (!ev)
        return;
    fill_header(&ev->h, FX_EV_SYSCALL, nr, th->start_ticks);
#pragma unroll
    for (int i = 0; i < 6; i++)
        ev->args[i] = a[i];
    ev->aux[0] = 0;
    ev->aux[1] = 0;
#pragma unroll
    for (int i = 0; i < 3; i++) {
        ev->str[i][0] = 0;
        if (desc & (0x100 << i))
            bpf_probe_read_user_str(ev->str[i], FX_STR_LEN, (void *)a[i]);
    }
    if ((desc & 0xFF) == FX_CAP_CAPSET) {
        u32 data[6] = {};       /* struct __user_cap_data_struct[2] */
        bpf_probe_read_user(data, sizeof(data), (void *)a[1]);
        ev->aux[0] = data[0] | ((u64)data[3] << 32);
        ev->aux[1] = data[1] | ((u64)data[4] << 32);
    }
    events.ringbuf_submit(ev, 0);
}

/* ptrace requests that take hold of or write into another process (or ask to be traced):
 * TRACEME 0, POKETEXT 4, POKEDATA 5, POKEUSER 6, SETREGS 13, SETFPREGS 15, ATTACH 16,
 * SETREGSET 0x4205, SEIZE 0x4206. */
static __always_inline bool ptrace_wanted(u64 request)
{
    return request == 0 || request == 4 || request == 5 || request == 6 || request == 13 ||
           request == 15 || request == 16 || request == 0x4205 || request == 0x4206;
}

/* bpf commands that load or attach a program: PROG_LOAD 5, PROG_ATTACH 8,
 * RAW_TRACEPOINT_OPEN 17, LINK_CREATE 28. */
static __always_inline bool bpf_cmd_wanted(u64 cmd)
{
    return cmd == 5 || cmd == 8 || cmd == 17 || cmd == 28;
}

/* Whether the path ends in "release_agent" (the whole name): a cgroup v1 hierarchy's program,
 * run as root on the host when a cgroup empties, wherever the hierarchy is mounted. */
static __always_inline bool release_agent_path(void *path)
{
    u32 zero = 0;
    struct fx_path_scratch *s = path_scratch.lookup(&zero);
    if (!s)
        return false;
    long n = bpf_probe_read_user_str(s->p, FX_STR_LEN, path);   /* n counts the NUL */
    if (n < 14)
        return false;
    u32 off = (n - 14) & (FX_STR_LEN - 1);
    const char name[] = "release_agent";
#pragma unroll
    for (int i = 0; i < 13; i++)
        if (s->p[off + i] != name[i])
            return false;
    return off == 0 || s->p[(off - 1) & (FX_STR_LEN - 1)] == '/';
}

/* An open for writing (O_WRONLY or O_RDWR) of an absolute path under /proc/ (another process's
 * memory through /proc/PID/mem, its maps of ids, kernel settings under /proc/sys) or of a
 * cgroup v1 release_agent. Every other open is only counted: the check costs one 8-byte read
 * of user memory and, unless it starts with /proc/, one read of the path; only for opens for
 * writing. openat2 carries its flags in struct open_how (desc bit 15). */
static __always_inline bool open_write_wanted(u64 *a, u32 desc)
{
    u32 at = (desc >> 12) & 1;
    u64 flags = at ? a[2] : a[1];
    if ((desc >> 15) & 1) {
        flags = 0;
        bpf_probe_read_user(&flags, sizeof(flags), (void *)a[2]);   /* open_how.flags */
    }
    if (!(flags & 3))
        return false;
    void *path = (void *)(at ? a[1] : a[0]);
    char p[8] = {};
    if (bpf_probe_read_user(p, sizeof(p), path))
        return false;
    if (p[0] == '/' && p[1] == 'p' && p[2] == 'r' && p[3] == 'o' && p[4] == 'c' && p[5] == '/')
        return true;
    return release_agent_path(path);
}

static __always_inline void stash_argv(u64 *a, u16 nr, u32 desc)
{
    struct fx_exec_stash *st = exec_stash.task_storage_get(
        bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!st)
        return;                 /* counted as FX_DROP_ARGV when the exec succeeds */
    u32 argv_arg = (desc >> 12) & 7;
    u64 argv = argv_arg == 2 ? a[2] : a[1];
    st->nr = nr;
    st->flags = 0;
    st->argc = 0;
    u32 argc = 0;
#pragma unroll
    for (int i = 0; i < FX_MAX_ARGS; i++) {
        u64 p = 0;
        if (bpf_probe_read_user(&p, sizeof(p), (void *)(argv + i * sizeof(u64))) || !p)
            break;
        bpf_probe_read_user_str(st->argv[i], FX_ARG_LEN, (void *)p);
        argc++;
    }
    if (argc == FX_MAX_ARGS) {
        u64 p = 0;
        bpf_probe_read_user(&p, sizeof(p), (void *)(argv + FX_MAX_ARGS * sizeof(u64)));
        if (p)
            st->flags |= FX_EXEC_ARGV_TRUNCATED;
    }
    st->argc = argc;
    st->valid = 1;
}

#if !defined(__x86_64__) && !defined(CONFIG_X86_64)
#error "the raw sys_enter tracepoint reads syscall arguments from x86-64 registers"
#endif

/* A syscall's arguments from the registers the raw tracepoint passes (struct pt_regs, x86-64
 * layout): di si dx r10 r8 r9, or for a 32-bit call bx cx dx si di bp (32-bit values). Only
 * high-signal calls pay for it. */
static __always_inline u64 reg(u64 regs, u32 off, bool compat)
{
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)(regs + off));
    return compat ? (u32)v : v;
}

static __always_inline void syscall_args(u64 *a, u64 regs, bool compat)
{
    a[0] = reg(regs, compat ? 40 : 112, compat);
    a[1] = reg(regs, compat ? 88 : 104, compat);
    a[2] = reg(regs, 96, compat);
    a[3] = reg(regs, compat ? 104 : 56, compat);
    a[4] = reg(regs, compat ? 112 : 72, compat);
    a[5] = reg(regs, compat ? 32 : 64, compat);
}

/* The raw tracepoint (not the raw_syscalls:sys_enter trace event): the kernel calls the program
 * with the registers and the number, without filling a trace record first. */
RAW_TRACEPOINT_PROBE(sys_enter)
{
    u32 zero = 0;
    struct fx_config *cfg = config.lookup(&zero);
    if (!cfg || !cfg->ns_per_tick)  /* not configured yet */
        return 0;
    char *task = (char *)bpf_get_current_task_btf();
    u32 tgid = *(u32 *)(task + FX_OFF_TGID);
    if (tgid == cfg->self_tgid)
        return 0;
    long id = ctx->args[1];
    bool compat = *(u32 *)(task + FX_OFF_THREAD_STATUS) & cfg->compat_mask;
    u16 nr = (id >= 0 && id < FX_MAX_NR) ? id + (compat ? FX_MAX_NR : 0) : FX_NR_OTHER;

    struct fx_thread *th = threads.task_storage_get(
        (struct task_struct *)task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!th) {
        count_drop(FX_DROP_THREAD, 1);
        return 0;
    }
    if (th->flags != FX_TH_INIT) {  /* the thread's first syscall, or after a set*id call */
        if (!(th->flags & FX_TH_INIT)) {
            th->start_ticks = process_start_ticks(cfg);
            th->prev = FX_NR_START;
            th->run_count = 0;
            th->flags = FX_TH_INIT;
        }
        if (th->flags & FX_TH_CRED_PENDING)
            check_cred(th);
    }

    /* A run that continues (same bigram, same count map) only counts; a run of 0 calls with
     * the same id is the same as a new one. */
    u64 run_id = RUN_ID(cfg->gen, th->prev, nr);
    th->prev = nr;
    if (th->run_id == run_id) {
        th->run_count++;
    } else {
        flush_run(cfg, th, tgid);
        th->run_id = run_id;
        th->run_count = 1;
    }

    if (nr == FX_NR_OTHER)
        return 0;
    u32 idx = nr;
    u32 *descp = syscall_desc.lookup(&idx);
    if (!descp || !*descp)
        return 0;
    u32 desc = *descp;
    u64 a[6];
    syscall_args(a, ctx->args[0], compat);
    if (compat) {               /* the arguments as the 32-bit call passed them, no strings */
        emit_syscall(a, th, nr, FX_CAP_EVENT);
        return 0;
    }
    u32 cls = desc & 0xFF;
    if (cls == FX_CAP_EXEC) {
        stash_argv(a, nr, desc);
        return 0;
    }
    if (cls == FX_CAP_PTRACE && !ptrace_wanted(a[0]))
        return 0;
    if (cls == FX_CAP_BPF && !bpf_cmd_wanted(a[0]))
        return 0;
    if (cls == FX_CAP_OPEN_PROC && !open_write_wanted(a, desc))
        return 0;
    emit_syscall(a, th, nr, desc);
    if (cls == FX_CAP_CRED || cls == FX_CAP_CAPSET) {
        th->flags |= FX_TH_CRED_PENDING;
        th->cred_ids = bpf_get_current_uid_gid();
        th->cred_nr = nr;
    }
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 zero = 0;
    struct fx_config *cfg = config.lookup(&zero);
    if (!cfg || !cfg->ns_per_tick)  /* not configured yet */
        return 0;
    if ((u32)(bpf_get_current_pid_tgid() >> 32) == cfg->self_tgid)
        return 0;
    struct fx_exec_event *ev = exec_out.lookup(&zero);
    struct fx_exec_paths *paths = exec_paths.lookup(&zero);
    if (!ev || !paths) {
        count_drop(FX_DROP_EVENTS, 1);
        return 0;
    }
    struct task_struct *btf_task = bpf_get_current_task_btf();
    struct fx_thread *th = threads.task_storage_get(btf_task, 0, 0);
    u64 start = (th && (th->flags & FX_TH_INIT)) ? th->start_ticks : process_start_ticks(cfg);
    fill_header(&ev->h, FX_EV_EXEC, -1, start);
    ev->old_tid = args->old_pid;
    ev->flags = 0;
    ev->cut_parts = 0;

    u32 off = 0;
    struct fx_exec_stash *st = exec_stash.task_storage_get(btf_task, 0, 0);
    if (st && st->valid) {
        u32 argc = st->argc;
        if (argc > FX_MAX_ARGS)
            argc = FX_MAX_ARGS;
        bpf_probe_read_kernel(ev->data, argc * FX_ARG_LEN, st->argv);
        off = argc * FX_ARG_LEN;
        ev->argc = argc;
        ev->flags |= st->flags;
        ev->exec_nr = st->nr;
        st->valid = 0;
    } else {
        ev->argc = 0;
        ev->flags |= FX_EXEC_NO_ARGV;
        ev->exec_nr = -1;
        count_drop(FX_DROP_ARGV, 1);
    }

    u64 task = bpf_get_current_task();
    u64 parent = read_u64(task, cfg->task_real_parent);
    ev->ppid = read_u32(parent, cfg->task_tgid);
    bpf_probe_read_kernel_str(ev->parent_comm, FX_COMM_LEN, (void *)(parent + cfg->task_comm));
    ev->euid = read_u32(read_u64(task, cfg->task_cred), cfg->cred_euid);
    ev->flags |= task_exe(paths->exe, &ev->exe_parts, &ev->cut_parts, cfg, task);
    ev->parent_start_ticks = task_start_ticks(cfg, parent);
    ev->parent_flags = task_exe(paths->parent_exe, &ev->parent_exe_parts,
                                &ev->parent_cut_parts, cfg, parent);
    u32 parts = ev->exe_parts;
    if (parts > FX_PATH_PARTS)
        parts = FX_PATH_PARTS;
    bpf_probe_read_kernel(ev->data + off, parts * FX_PART_LEN, paths->exe);
    off += parts * FX_PART_LEN;
    parts = ev->parent_exe_parts;
    if (parts > FX_PATH_PARTS)
        parts = FX_PATH_PARTS;
    bpf_probe_read_kernel(ev->data + off, parts * FX_PART_LEN, paths->parent_exe);
    off += parts * FX_PART_LEN;
    ev->flags |= stdio_inet(cfg, task);
    ev->parent_flags |= stdio_inet(cfg, parent);
    /* The filename last: only its own length is sent. It is read from the tracepoint's record,
     * which cannot fault; were it to, the helper leaves "" (and its NUL is sent). */
    long n = bpf_probe_read_kernel_str(ev->data + off, FX_FILENAME_LEN,
                                       (char *)args + (args->data_loc_filename & 0xFFFF));
    off += n > 0 ? n : 1;
    ev->data_len = off;
    u64 size = __builtin_offsetof(struct fx_exec_event, data) + off;
    asm volatile("" : "+r"(size));  /* keep the bound check on the register passed below */
    if (size > sizeof(struct fx_exec_event))    /* cannot happen; bounds it for the verifier */
        return 0;
    long err = 1;
#pragma unroll
    for (int i = 0; i < 2 * FX_RING_TRIES && err; i++) {
        if (i)
            count_drop(FX_RETRIED, 1);
        if (i < FX_RING_TRIES)
            err = events.ringbuf_output(ev, size, 0);
        else
            err = spill.ringbuf_output(ev, size, 0);
    }
    if (err)
        count_drop(FX_DROP_EVENTS, 1);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 zero = 0;
    struct fx_config *cfg = config.lookup(&zero);
    if (!cfg || !cfg->ns_per_tick)  /* not configured yet */
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    if (tgid == cfg->self_tgid)
        return 0;
    struct fx_thread *th = threads.task_storage_get(bpf_get_current_task_btf(), 0, 0);
    if (th) {
        if (th->flags & FX_TH_CRED_PENDING)
            check_cred(th);
        flush_run(cfg, th, tgid);
    }
#ifdef FX_HAVE_GROUP_DEAD
    if (!args->group_dead)
        return 0;
#else
    if ((u32)pid_tgid != tgid)
        return 0;
#endif
    u64 start = (th && (th->flags & FX_TH_INIT)) ? th->start_ticks : process_start_ticks(cfg);
    struct fx_header *h = ring_reserve(sizeof(struct fx_header));
    if (!h)
        return 0;
    fill_header(h, FX_EV_EXIT, -1, start);
    events.ringbuf_submit(h, 0);
    return 0;
}
