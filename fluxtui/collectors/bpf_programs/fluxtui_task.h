/* Reading the current task with offsets from the running kernel's BTF (struct fx_config), shared
 * by syscalls.bpf.c and connect_trace.bpf.c: the process's start time, its parent, and the path
 * of an executable file walked up its dentries. Include after fluxtui_events.h and after the
 * program's `config` array is declared (`fx_cfg()` looks it up). */
#ifndef FLUXTUI_TASK_H
#define FLUXTUI_TASK_H

static __always_inline u64 read_u64(u64 base, u32 off)
{
    u64 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)(base + off));
    return v;
}

static __always_inline u32 read_u32(u64 base, u32 off)
{
    u32 v = 0;
    bpf_probe_read_kernel(&v, sizeof(v), (void *)(base + off));
    return v;
}

/* Start time of a task's process in clock ticks, as in field 22 of /proc/PID/stat. */
static __always_inline u64 task_start_ticks(struct fx_config *cfg, u64 task)
{
    u64 leader = read_u64(task, cfg->task_group_leader);
    u64 boot_ns = read_u64(leader, cfg->task_start_boottime);
    return boot_ns / cfg->ns_per_tick;     /* callers checked ns_per_tick != 0 */
}

/* Walk a `struct path` up its dentries, crossing mount points, leaf first. Step i writes out[i]:
 * a name, or "" when the step crossed a mount point; *parts is the number of steps taken, bit i
 * of *cut says the name of step i was cut. Returns FX_EXEC_* flags: PATH_TRUNCATED when the walk
 * needed more than FX_PATH_PARTS steps, NAME_TRUNCATED when a name was cut, ANON_FILE when it
 * ended at a dentry that is its own parent without being a mount's root: a file with no place
 * in any directory tree (memfd, an anonymous or pseudo file), whatever its name says.
 * Indexing by the step keeps the verifier's work linear in FX_PATH_PARTS. */
static __always_inline u32 walk_path(char (*out)[FX_PART_LEN], u32 *parts, u32 *cut,
                                     struct fx_config *cfg, u64 path)
{
    u64 dentry = read_u64(path, cfg->path_dentry);
    u64 vfsmnt = read_u64(path, cfg->path_mnt);
    u64 mnt = vfsmnt - cfg->mount_mnt;
    u32 flags = 0;
    *parts = 0;
    *cut = 0;
    if (!dentry || !vfsmnt)
        return 0;
    for (int i = 0; i < FX_PATH_PARTS; i++) {
        u64 root = read_u64(vfsmnt, cfg->vfsmount_mnt_root);
        u64 parent = read_u64(dentry, cfg->dentry_d_parent);
        if (dentry == root) {
            u64 mnt_parent = read_u64(mnt, cfg->mount_mnt_parent);
            if (mnt_parent == mnt)
                return flags;   /* the root of the namespace, or of an internal mount */
            out[i][0] = 0;
            dentry = read_u64(mnt, cfg->mount_mnt_mountpoint);
            mnt = mnt_parent;
            vfsmnt = mnt + cfg->mount_mnt;
            *parts = i + 1;
            continue;
        }
        u64 name = read_u64(dentry, cfg->dentry_d_name + cfg->qstr_name);
        bpf_probe_read_kernel_str(out[i], FX_PART_LEN, (void *)name);
        if (read_u32(dentry, cfg->dentry_d_name + cfg->qstr_len) >= FX_PART_LEN) {
            flags |= FX_EXEC_NAME_TRUNCATED;
            *cut |= 1u << i;
        }
        *parts = i + 1;
        if (dentry == parent)
            return flags | FX_EXEC_ANON_FILE;
        dentry = parent;
    }
    return flags | FX_EXEC_PATH_TRUNCATED;
}

/* The executable of a task (its mm's exe_file), walked into out; 0 parts for a kernel thread. */
static __always_inline u32 task_exe(char (*out)[FX_PART_LEN], u32 *parts, u32 *cut,
                                    struct fx_config *cfg, u64 task)
{
    u64 exe_file = read_u64(read_u64(task, cfg->task_mm), cfg->mm_exe_file);
    if (!exe_file) {
        *parts = 0;
        *cut = 0;
        return 0;
    }
    return walk_path(out, parts, cut, cfg, exe_file + cfg->file_f_path);
}

/* FX_EXEC_STDIO_INET when one of the task's standard streams (fd 0, 1, 2) is an internet
 * (AF_INET, AF_INET6) socket: a shell whose stdin/stdout is a TCP connection is a reverse or
 * bind shell, whoever set it up and however short it lives. Unix sockets (the journal's) and
 * pipes are not. */
static __always_inline u32 stdio_inet(struct fx_config *cfg, u64 task)
{
    u64 files = read_u64(task, cfg->task_files);
    if (!files)
        return 0;
    u64 fdt = read_u64(files, cfg->files_fdt);
    if (!fdt)
        return 0;
    u32 max_fds = read_u32(fdt, cfg->fdtable_max_fds);
    u64 fds = read_u64(fdt, cfg->fdtable_fd);
    if (!fds)
        return 0;
    u32 found = 0;
#pragma unroll
    for (int i = 0; i < 3; i++) {
        u64 file = i < max_fds ? read_u64(fds, i * 8) : 0;
        u64 inode = file ? read_u64(file, cfg->file_f_inode) : 0;
        u16 mode = 0;
        if (inode)
            bpf_probe_read_kernel(&mode, sizeof(mode), (void *)(inode + cfg->inode_i_mode));
        u64 sock = (mode & 0170000) == 0140000 ? read_u64(file, cfg->file_private_data) : 0;
        u64 sk = sock ? read_u64(sock, cfg->socket_sk) : 0;   /* S_IFSOCK: a struct socket */
        u16 family = 0;
        if (sk)
            bpf_probe_read_kernel(&family, sizeof(family), (void *)(sk + cfg->sock_family));
        if (family == 2 || family == 10)   /* AF_INET, AF_INET6 */
            found = FX_EXEC_STDIO_INET;
    }
    return found;
}

#endif
