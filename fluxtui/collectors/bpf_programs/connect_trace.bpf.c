// TCP connect attempts (CLOSE -> SYN_SENT) with the connecting process, and their outcomes
// (SYN_SENT -> ESTABLISHED or CLOSE), for port-scan, burst and beaconing detection.
//
// The attempt is read in the connecting process's context, when connect() runs: pid, start time
// and parent are read from the task with offsets from the running kernel's BTF (`config`, set
// by fluxtui/collectors/connect_trace.py), so a process that exits a microsecond later is still
// identified. Its executable is walked once per process and executable (an LRU of those
// described; after an exec it is described again) and sent as a separate FX_CONN_PROCESS
// record. Outcomes happen in softirq context: they carry only the socket's address, which pairs
// them with their attempt.
// RING_PAGES (ring buffer size, a map size fixed at load) is given with -D by the loader.
#include <linux/in.h>
#include <linux/socket.h>
#include <net/tcp_states.h>
#include "fluxtui_events.h"

BPF_RINGBUF_OUTPUT(events, RING_PAGES);
BPF_ARRAY(dropped, u64, 1);
BPF_ARRAY(config, struct fx_config, 1);
BPF_TABLE("lru_hash", u64, u64, described, 8192);   /* tgid << 32 ^ start ^ exe file -> 1 */
BPF_TABLE("lru_hash", u64, u8, pending, 65536);     /* sockets in SYN_SENT we reported */

#include "fluxtui_task.h"

static __always_inline void count_drop(void)
{
    int zero = 0;
    u64 *count = dropped.lookup(&zero);
    if (count)
        __sync_fetch_and_add(count, 1);
}

static __always_inline void describe_process(struct fx_config *cfg, u64 task, u32 tgid,
                                             u64 start)
{
    /* The executable file's address is part of the key: after an exec the process is
     * described again. */
    u64 id = ((u64)tgid << 32) ^ start ^ read_u64(read_u64(task, cfg->task_mm), cfg->mm_exe_file);
    u64 one = 1;
    if (described.lookup(&id))
        return;
    struct fx_connect_process *p = events.ringbuf_reserve(sizeof(*p));
    if (!p) {
        count_drop();
        return;
    }
    p->kind = FX_CONN_PROCESS;
    p->tgid = tgid;
    p->start_ticks = start;
    p->pad = 0;
    p->exe_flags = task_exe(p->exe, &p->exe_parts, &p->cut_parts, cfg, task);
    events.ringbuf_submit(p, 0);
    described.update(&id, &one);
}

TRACEPOINT_PROBE(sock, inet_sock_set_state) {
    if (args->protocol != IPPROTO_TCP)
        return 0;
    u64 sk = (u64)args->skaddr;
    u32 kind;
    if (args->oldstate == TCP_CLOSE && args->newstate == TCP_SYN_SENT)
        kind = FX_CONN_ATTEMPT;
    else if (args->oldstate == TCP_SYN_SENT && args->newstate == TCP_ESTABLISHED)
        kind = FX_CONN_ESTABLISHED;
    else if (args->oldstate == TCP_SYN_SENT && args->newstate == TCP_CLOSE)
        kind = FX_CONN_FAILED;
    else
        return 0;
    if (kind != FX_CONN_ATTEMPT) {
        if (!pending.lookup(&sk))
            return 0;   /* an attempt we did not report (before start, or dropped) */
        pending.delete(&sk);
    }
    struct fx_connect_event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        count_drop();
        return 0;
    }
    __builtin_memset(e, 0, sizeof(*e));
    e->kind = kind;
    e->ts_ns = bpf_ktime_get_boot_ns();     /* CLOCK_BOOTTIME, as process start times */
    e->sk = sk;
    if (kind != FX_CONN_ATTEMPT) {
        events.ringbuf_submit(e, 0);
        return 0;
    }
    u64 pid_tgid = bpf_get_current_pid_tgid();
    e->tgid = pid_tgid >> 32;
    e->tid = (u32)pid_tgid;
    e->family = args->family;
    e->dport = args->dport;
    if (args->family == AF_INET)
        __builtin_memcpy(e->daddr, args->daddr, 4);
    else
        __builtin_memcpy(e->daddr, args->daddr_v6, 16);
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    e->uid = (u32)bpf_get_current_uid_gid();
    int zero = 0;
    struct fx_config *cfg = config.lookup(&zero);
    u64 task = bpf_get_current_task();
    u32 tgid = pid_tgid >> 32;
    u64 start = 0;
    if (cfg && cfg->ns_per_tick) {
        start = task_start_ticks(cfg, task);
        u64 parent = read_u64(task, cfg->task_real_parent);
        e->start_ticks = start;
        e->ppid = read_u32(parent, cfg->task_tgid);
        e->parent_start_ticks = task_start_ticks(cfg, parent);
    }
    events.ringbuf_submit(e, 0);
    u8 one = 1;
    pending.update(&sk, &one);
    if (cfg && cfg->ns_per_tick)
        describe_process(cfg, task, tgid, start);
    return 0;
}
