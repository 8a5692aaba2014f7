// TCP connect attempts (CLOSE -> SYN_SENT) with the connecting process, for port-scan and
// beaconing detection. Reads tracepoint fields only: their layout comes from tracefs at load
// time, so it holds even when the installed kernel headers are older than the running kernel.
// RING_PAGES (ring buffer size, a map size fixed at load) is given with -D by the loader.
#include <linux/in.h>
#include <linux/socket.h>
#include <net/tcp_states.h>

struct connect_event {
    u64 ts_ns;
    u32 tgid;
    u16 family;
    u16 dport;
    u8 daddr[16];
    char comm[16];
    u32 uid;
    u32 tid;
};

BPF_RINGBUF_OUTPUT(events, RING_PAGES);
BPF_ARRAY(dropped, u64, 1);

TRACEPOINT_PROBE(sock, inet_sock_set_state) {
    if (args->protocol != IPPROTO_TCP || args->oldstate != TCP_CLOSE
            || args->newstate != TCP_SYN_SENT)
        return 0;
    struct connect_event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) {
        int zero = 0;
        u64 *count = dropped.lookup(&zero);
        if (count)
            __sync_fetch_and_add(count, 1);
        return 0;
    }
    // CLOCK_BOOTTIME, the clock of a process's start time in /proc/PID/stat.
    e->ts_ns = bpf_ktime_get_boot_ns();
    u64 pid_tgid = bpf_get_current_pid_tgid();
    e->tgid = pid_tgid >> 32;
    e->tid = (u32)pid_tgid;
    e->family = args->family;
    e->dport = args->dport;
    if (args->family == AF_INET) {
        __builtin_memcpy(e->daddr, args->daddr, 4);
        __builtin_memset(e->daddr + 4, 0, 12);
    } else {
        __builtin_memcpy(e->daddr, args->daddr_v6, 16);
    }
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    e->uid = (u32)bpf_get_current_uid_gid();
    events.ringbuf_submit(e, 0);
    return 0;
}
