/*
 * sandbox.h - what each keywardd process may do once it serves (privilege
 * separation; docs/threat-model.md): the user it runs as, its capabilities
 * and resource limits, and a seccomp-BPF allow-list per process, in the
 * manner of OpenSSH's sandbox-seccomp-filter.c.
 *
 * Order of use in a process that starts as root: kw_caps_drop_bounding()
 * (while it is the only thread), open what needs privileges (listening
 * sockets, the TLS key; the custody's memory lock limit), kw_privs_drop(),
 * kw_process_harden(), kw_sandbox_enter().
 */
#ifndef KW_SANDBOX_H
#define KW_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>

#include "result.h"

/* A process's identity: the system user it runs as. */
struct kw_identity {
        uid_t uid;
        gid_t gid;
        int change;           /* 1: started as root, switch to this user */
        char name[64];
};

/*
 * The identity for the configured user.  Started as root: user must name
 * an existing user other than root (KW_ERR_CONFIG with a detail saying how
 * to create it), and change = 1.  Started as anybody else: the current user
 * (change = 0), whatever user says.  *ret set only on success.
 */
KW_MUST_USE kw_result kw_identity_resolve(const char *user, struct kw_identity *ret);

/*
 * The configured user itself, whoever this process runs as: user must name
 * an existing user other than root (KW_ERR_CONFIG with a detail otherwise);
 * change = 1 when this process is root and may switch to it.  For the
 * standalone processes (main.c), which must know the other process's user
 * without being root.  *ret set only on success.
 */
KW_MUST_USE kw_result kw_identity_lookup(const char *user, struct kw_identity *ret);

/* Empties the capability bounding set when the process may (root); a no-op
 * otherwise.  Affects the calling thread and the threads it creates after. */
void kw_caps_drop_bounding(void);

/*
 * Becomes id (supplementary groups: the user's own) when id->change, and
 * checks that uid 0 cannot be regained; then the process has no
 * capabilities left (effective, permitted, ambient).  glibc applies the
 * change to every thread.  KW_ERR_CONFIG with a detail on failure.
 */
KW_MUST_USE kw_result kw_privs_drop(const struct kw_identity *id);

/* Not dumpable (no core, no ptrace by the same uid), RLIMIT_CORE 0 soft and
 * hard, no new privileges (for this thread and the ones it creates; the
 * seccomp filter extends it to all threads). */
KW_MUST_USE kw_result kw_process_harden(void);

enum kw_sandbox_profile {
        KW_SANDBOX_FRONT,     /* network I/O on open sockets, a Unix connect to custody;
                                 no file opened, no exec, no new executable memory */
        KW_SANDBOX_CUSTODY,   /* files and sockets (database, HSM module, devices);
                                 no exec, no ptrace, no privilege or namespace change,
                                 no writable-and-executable memory */
};

enum kw_sandbox_mode {
        KW_SANDBOX_ENFORCE,   /* a call outside the list kills the process (SIGSYS) */
        KW_SANDBOX_LOG,       /* allowed, and logged by the kernel (audit): for
                                 trying a new PKCS#11 module or platform       */
};

/* "enforce" | "log" -> mode; -1 for anything else. */
int kw_sandbox_mode_parse(const char *s);

/* Installs the profile's filter on every thread of the process (TSYNC).
 * Irreversible.  KW_ERR_INTERNAL with a detail when the kernel refuses. */
KW_MUST_USE kw_result kw_sandbox_enter(enum kw_sandbox_profile p, enum kw_sandbox_mode m);

#endif
