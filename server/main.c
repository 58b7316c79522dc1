/*
 * main.c - keywardd: three processes, as OpenSSH separates privileges
 * (docs/threat-model.md).
 *
 *   parent   (this process; root on the appliance) reads the configuration,
 *            prepares the socket directory, starts the custody process and
 *            the front under their own users, tells the custody process
 *            which pid is the front, and restarts either when it dies.  It
 *            keeps no secret (they are wiped from its configuration at once)
 *            and reads nothing from the network.
 *   custody  (keywardd --custody, [custody] user): the key store, the HSM,
 *            the keys; custody/custody_start.c.
 *   front    (keywardd --front, [front] user): TLS, HTTP, the protocols;
 *            binds its listeners and loads its TLS key, then drops every
 *            privilege and enters its seccomp sandbox.
 * Both children are a fresh exec of this binary: they share no memory with
 * the parent or each other, and each gets its own address-space layout.
 * Started by another user than root, all three run as that user (said once
 * at start-up): the sandboxes still apply, the separate users do not.
 *
 * Standalone: `keywardd --custody` and `keywardd --front` started on their
 * own (no --ready-fd, no --control-fd), each by a systemd unit under its own
 * User= (appliance/systemd/, docs/appliance-units.md).  There is no parent:
 * systemd supervises and restarts, custody admits any process of the
 * [front] user (which must not be the [custody] user), may take its socket
 * from a .socket unit, and both say READY=1 to $NOTIFY_SOCKET.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sandbox.h"
#include "common/sdproto.h"
#include "config.h"
#include "custody/custody.h"
#include "custody/custody_dbio.h"
#include "front/front.h"
#include "front/route_attest.h"
#include "front/route_ekm.h"
#include "front/route_ui.h"
#include "front/route_xks.h"

#ifndef KEYWARD_VERSION
#define KEYWARD_VERSION "0.0.0-dev"
#endif

#define START_WAIT_MS 60000
#define STOP_WAIT_MS 10000
#define BACKOFF_MAX_MS 5000

/*
 * The route table, built once at start from the configuration.  http.c
 * matches the longest prefix; a route not allowed on a listener is "no
 * route" there.  The admin API shares the main listener unless [admin]
 * listen names another address.  Protocol routes (EKM, XKS, attestation)
 * add their rows here, each only when enabled.
 */
#define MAX_ROUTES 32
static struct kw_route route_table[MAX_ROUTES + 1];

static void route_add(size_t *n, const char *prefix, unsigned listeners, kw_route_fn fn,
                      const char *name, kw_route_error_fn error)
{
        if (*n < MAX_ROUTES)
                route_table[(*n)++] = (struct kw_route){ prefix, listeners, fn, name, error };
}

static int admin_split(const struct kw_config *cfg)
{
        return cfg->admin.listen && cfg->admin.listen[0] &&
               strcmp(cfg->admin.listen, cfg->http.listen) != 0;
}

static const struct kw_route *build_routes(const struct kw_config *cfg)
{
        unsigned admin = admin_split(cfg) ? KW_LISTENER_ADMIN : KW_LISTENER_MAIN | KW_LISTENER_ADMIN;
        unsigned both = KW_LISTENER_MAIN | KW_LISTENER_ADMIN;
        size_t n = 0;
        route_add(&n, "/healthz", both, kw_route_healthz, "healthz", NULL);
        if (cfg->admin.enable) {
                route_add(&n, "/api/v1/", admin, kw_route_admin, "admin", NULL);
                route_add(&n, "/metrics", admin, kw_route_metrics, "metrics", NULL);
                if (kw_ui_enabled(cfg))   /* the web console, beside its API */
                        route_add(&n, "/ui", admin, kw_route_ui, "ui", NULL);
        }
        /* protocol routes: on the main listener only */
        if (cfg->ekm.azure_ekm_enable)
                route_add(&n, KW_EKM_ROUTE_PREFIX, KW_LISTENER_MAIN, kw_route_ekm, "ekm",
                          kw_route_ekm_error);
        if (cfg->attestation.enable)
                route_add(&n, "/attestation", KW_LISTENER_MAIN, kw_route_attest, "attestation",
                          NULL);
        /* AWS XKS: the catch-all "/" (lowest priority: the longest prefix
         * wins), because key stores have arbitrary URI prefixes and the admin
         * API creates new ones at run time; non-XKS paths get the generic 404 */
        route_add(&n, "/", KW_LISTENER_MAIN, kw_route_xks, "xks", kw_route_xks_error);
        route_table[n] = (struct kw_route){ NULL, 0, NULL, NULL, NULL };
        return route_table;
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: keywardd [--config FILE] [--check-config | --init | --recover-admin]\n"
                "       keywardd [--config FILE] --db-export FILE | --db-import FILE\n"
                "       keywardd [--config FILE] --custody | --front\n"
                "       keywardd --version | --help\n"
                "\n"
                "  --config FILE     configuration (default " KW_CONFIG_DEFAULT_PATH ")\n"
                "  --check-config    validate the configuration and the files it names, then exit\n"
                "  --init            create the key store if there is none (master key when\n"
                "                    [hsm] create_master_key, database key, database, first\n"
                "                    admin token), check that it opens, then exit without\n"
                "                    serving; on an existing store it creates nothing.  Run it\n"
                "                    as the [custody] user (as root it becomes that user).\n"
                "                    Prints one JSON line: {\"master_key\":\"created\"|\"found\",\n"
                "                    \"database\":\"created\"|\"found\",\"admin\":\"token_file\"|\n"
                "                    \"initial_token_sha256\"|\"exists\"}\n"
                "  --recover-admin   create a new admin token in [admin] token_file (audited as\n"
                "                    console:<user>), for when no admin token is left; run it as\n"
                "                    root on the appliance console\n"
                "  --db-export FILE  write the key store ([db] engine) to FILE (\"-\": standard\n"
                "                    output) as one JSON document: sealed key versions, public\n"
                "                    data, token and user hashes, sealed XKS secrets; no clear\n"
                "                    secret.  Every key version is unsealed and used once first\n"
                "                    (the round trip).  Prints the counts, the checksum of\n"
                "                    every key's public data and the file's SHA-256\n"
                "  --db-import FILE  write such a document (\"-\": standard input) into the\n"
                "                    key store [db] engine names, which must be empty, under\n"
                "                    the same HSM master key; then recompute the checksum from\n"
                "                    the store and unseal and use every key version.  Both run\n"
                "                    as the [custody] user (as root they become it) and serve\n"
                "                    nothing; keywardctl db export|import runs them\n"
                "                    (docs/fleet-migration.md).  Exit 1: refused or not verified\n"
                "  --custody         run only the custody process, standalone (one systemd unit,\n"
                "                    User=[custody] user): it admits any process of the [front]\n"
                "                    user, which must be another user; takes its socket from a\n"
                "                    .socket unit when passed one (LISTEN_FDS)\n"
                "  --front           run only the front, standalone (User=[front] user)\n"
                "                    Standalone, each sends READY=1 to $NOTIFY_SOCKET when serving\n"
                "                    and is not stopped with a parent (systemd supervises it);\n"
                "                    see docs/appliance-units.md.  Without these two options,\n"
                "                    keywardd starts and supervises both itself.\n"
                "\n"
                "Every setting can be overridden with KEYWARD_<SECTION>_<KEY> (see docs/config.md).\n"
                "Exit status: 0 ok, 2 usage or configuration, 3 files/network, 4 HSM, 5 database.\n");
}

/* Files the configuration names must be there before anything starts. */
static int check_files(const struct kw_config *cfg)
{
        struct {
                const char *what, *path;
        } need[] = {
                { "[hsm] module", cfg->hsm.module },
                { "[hsm] pin_file", cfg->hsm.pin_file },
                { "[tls] tls_cert_file", cfg->tls.tls_cert_file },
                { "[tls] tls_key_file", cfg->tls.tls_key_file },
                { "[tls] tls_p12_file", cfg->tls.tls_p12_file },
                { "[tls] clients_ca_cert_file", cfg->tls.clients_ca_cert_file },
        };
        int bad = 0;
        for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
                if (need[i].path == NULL || need[i].path[0] == '\0')
                        continue;
                if (access(need[i].path, R_OK) != 0) {
                        fprintf(stderr, "keywardd: %s: cannot read %s: %s\n", need[i].what,
                                need[i].path, strerror(errno));
                        bad = 1;
                }
        }
        if ((cfg->tls.tls_cert_file == NULL || cfg->tls.tls_cert_file[0] == '\0') &&
            (cfg->tls.tls_p12_file == NULL || cfg->tls.tls_p12_file[0] == '\0')) {
                fprintf(stderr, "keywardd: [tls]: no server certificate: set tls_cert_file and "
                                "tls_key_file, or tls_p12_file\n");
                bad = 1;
        }
        return bad;
}

/* The directory part of path ("." when none). */
static void dir_of(const char *path, char out[PATH_MAX])
{
        snprintf(out, PATH_MAX, "%s", path);
        char *slash = strrchr(out, '/');
        if (slash == out)
                slash[1] = '\0';
        else if (slash != NULL)
                *slash = '\0';
        else
                snprintf(out, PATH_MAX, ".");
}

/* The database lives in a directory that must exist (on the appliance, the
 * mounted data volume): creating it here would put the key store on the
 * wrong file system when the volume is not mounted. */
static int check_db_dir(const struct kw_config *cfg)
{
        if (strcmp(cfg->db.engine, "postgresql") == 0)
                return 0;   /* a fleet's store is the database server's */
        char dir[PATH_MAX];
        dir_of(cfg->db.path, dir);
        struct stat st;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                fprintf(stderr, "keywardd: [db] path: the directory %s does not exist (is the data "
                                "volume mounted?): create it, owned by the custody user, mode 0700\n",
                        dir);
                return -1;
        }
        return 0;
}

/*
 * The socket's directory, made when missing (a runtime directory such as
 * /run/keyward): with separate users, owner custody, group the front's, mode
 * 0750, so that only the front can reach the socket; unprivileged, 0700.
 */
static int prepare_socket_dir(const struct kw_config *cfg, const struct kw_identity *custody,
                              const struct kw_identity *front)
{
        char dir[PATH_MAX];
        dir_of(cfg->custody.socket_path, dir);
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
                fprintf(stderr, "keywardd: [custody] socket_path: cannot create %s: %s\n", dir,
                        strerror(errno));
                return -1;
        }
        if (custody->change && (chown(dir, custody->uid, front->gid) != 0 || chmod(dir, 0750) != 0)) {
                fprintf(stderr, "keywardd: cannot give %s to %s:%s: %s\n", dir, custody->name,
                        front->name, strerror(errno));
                return -1;
        }
        return 0;
}

/* With separate users: what only the custody user may read is not readable
 * by the front's user (owner, group or others bits). */
static int check_not_front_readable(const struct kw_config *cfg, const struct kw_identity *front)
{
        if (!front->change)
                return 0;
        gid_t groups[64];
        int ng = 64;
        if (getgrouplist(front->name, front->gid, groups, &ng) < 0)
                ng = 0;
        int fleet = strcmp(cfg->db.engine, "postgresql") == 0;
        const char *paths[] = { cfg->hsm.pin_file, fleet ? cfg->db.password_file : cfg->db.key_file,
                                fleet ? NULL : cfg->db.path };
        const char *what[] = { "[hsm] pin_file", fleet ? "[db] password_file" : "[db] key_file",
                               "[db] path" };
        int bad = 0;
        for (size_t i = 0; i < 3; i++) {
                struct stat st;
                if (paths[i] == NULL || stat(paths[i], &st) != 0)
                        continue;
                int in_group = 0;
                for (int g = 0; g < ng; g++)
                        in_group |= groups[g] == st.st_gid;
                int readable = (st.st_uid == front->uid && (st.st_mode & S_IRUSR)) ||
                               (in_group && (st.st_mode & S_IRGRP)) || (st.st_mode & S_IROTH);
                if (readable) {
                        fprintf(stderr, "keywardd: %s %s is readable by the front's user %s: give it "
                                        "to the custody user alone (chown %s, chmod 0600)\n",
                                what[i], paths[i], front->name, cfg->custody.user);
                        bad = 1;
                }
        }
        return bad;
}

/* [hsm] evaluation = true: said first by each process that starts on its
 * own (the parent; --custody and --front under systemd), so that whoever
 * reads the log sees it before anything else; the start records carry
 * "evaluation":true too, and /healthz and /metrics say it (route_ops.c). */
static void warn_evaluation(const struct kw_config *cfg)
{
        if (cfg->hsm.evaluation)
                kw_log(KW_LOG_WARN, "evaluation_mode", "evaluation", KW_LOG_TRUE,
                       "message", "[hsm] evaluation = true: the HSM is a local SoftHSM2 token, for "
                                  "evaluation only; do not keep production keys on this appliance",
                       KW_END);
}

static const char *evaluation_field(const struct kw_config *cfg)
{
        return cfg->hsm.evaluation ? KW_LOG_TRUE : KW_LOG_OMIT;
}

/* ------------------------------------------------------------ children */

static const char *config_path;

struct child {
        const char *role;     /* "custody" | "front" */
        pid_t pid;
        int control_fd;       /* custody: the write end of its control pipe */
};

static struct child custody_child = { "custody", -1, -1 };
static struct child front_child = { "front", -1, -1 };
static uid_t front_uid;   /* the front's user, for the custody process's peer check */

/* Tells the custody process which process is the front (custody.c refuses
 * every other peer): as soon as the front is forked, before it can connect. */
static void tell_custody_front(void)
{
        if (custody_child.control_fd < 0 || front_child.pid <= 0)
                return;
        char line[64];
        int n = snprintf(line, sizeof line, "front %ld %lu\n", (long)front_child.pid,
                         (unsigned long)front_uid);
        ssize_t w = write(custody_child.control_fd, line, (size_t)n);
        (void)w;
}

/*
 * Starts a child (a fresh exec of this binary in role) and waits until it
 * says it is ready.  Returns 0, or the child's exit status when it failed
 * to start (5 when it gave none).
 */
static int child_spawn(struct child *ch, int wait_ms)
{
        int ready[2], ctl[2] = { -1, -1 };
        if (pipe2(ready, O_CLOEXEC) != 0)
                return 3;
        int is_custody = strcmp(ch->role, "custody") == 0;
        if (is_custody && pipe2(ctl, O_CLOEXEC) != 0) {
                close(ready[0]);
                close(ready[1]);
                return 3;
        }
        char rfd[16], cfd[16];   /* formatted before fork: the child only execs */
        snprintf(rfd, sizeof rfd, "%d", ready[1]);
        snprintf(cfd, sizeof cfd, "%d", ctl[0]);
        pid_t pid = fork();
        if (pid < 0) {
                close(ready[0]);
                close(ready[1]);
                if (ctl[0] >= 0) {
                        close(ctl[0]);
                        close(ctl[1]);
                }
                return 3;
        }
        if (pid == 0) {
                fcntl(ready[1], F_SETFD, 0);   /* kept across exec */
                if (ctl[0] >= 0)
                        fcntl(ctl[0], F_SETFD, 0);
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                char *argv[10];
                int n = 0;
                argv[n++] = is_custody ? "keywardd-custody" : "keywardd-front";
                argv[n++] = is_custody ? "--custody" : "--front";
                argv[n++] = "--ready-fd";
                argv[n++] = rfd;
                if (is_custody) {
                        argv[n++] = "--control-fd";
                        argv[n++] = cfd;
                }
                if (config_path != NULL) {
                        argv[n++] = "--config";
                        argv[n++] = (char *)config_path;
                }
                argv[n] = NULL;
                execv("/proc/self/exe", argv);
                _exit(3);
        }
        close(ready[1]);
        if (ctl[0] >= 0)
                close(ctl[0]);
        if (!is_custody) {
                front_child.pid = pid;   /* tentatively: custody must know it first */
                tell_custody_front();
        }
        struct pollfd p = { .fd = ready[0], .events = POLLIN };
        char b = 0;
        int pr;
        do
                pr = poll(&p, 1, wait_ms);
        while (pr < 0 && errno == EINTR);
        ssize_t got = pr > 0 ? read(ready[0], &b, 1) : 0;
        close(ready[0]);
        if (got == 1) {
                ch->pid = pid;
                if (ch->control_fd >= 0)
                        close(ch->control_fd);
                ch->control_fd = ctl[1];
                return 0;
        }
        ch->pid = -1;
        if (ctl[1] >= 0)
                close(ctl[1]);
        int st = 0;
        if (pr == 0) {   /* not ready in time */
                kill(pid, SIGKILL);
                kw_log(KW_LOG_ERROR, "start_timeout", "process", ch->role, KW_END);
        }
        waitpid(pid, &st, 0);
        return WIFEXITED(st) && WEXITSTATUS(st) != 0 ? WEXITSTATUS(st) : 5;
}

static void child_stop(struct child *ch)
{
        if (ch->pid <= 0)
                return;
        kill(ch->pid, SIGTERM);
        for (int i = 0; i < STOP_WAIT_MS / 50; i++) {
                if (waitpid(ch->pid, NULL, WNOHANG) == ch->pid) {
                        ch->pid = -1;
                        return;
                }
                struct timespec ts = { 0, 50 * 1000000L };
                nanosleep(&ts, NULL);
        }
        kill(ch->pid, SIGKILL);
        waitpid(ch->pid, NULL, 0);
        ch->pid = -1;
}

static void describe_exit(int st, char out[48])
{
        if (WIFSIGNALED(st))
                snprintf(out, 48, "signal %d%s", WTERMSIG(st),
                         WTERMSIG(st) == SIGSYS ? " (a system call outside its sandbox)" : "");
        else
                snprintf(out, 48, "exit %d", WEXITSTATUS(st));
}

/* Restarts ch until it runs (the other keeps serving: the front answers
 * 503 while the custody process is away). */
static void child_restart(struct child *ch, const sigset_t *sigs)
{
        unsigned backoff_ms = 100;
        for (;;) {
                struct timespec ts = { backoff_ms / 1000, (long)(backoff_ms % 1000) * 1000000L };
                siginfo_t si;
                int sig = sigtimedwait(sigs, &si, &ts);
                if (sig == SIGTERM || sig == SIGINT) {
                        raise(sig);   /* handled by the main loop */
                        return;
                }
                int rc = child_spawn(ch, START_WAIT_MS);
                if (rc == 0) {
                        kw_log(KW_LOG_INFO, "process_restarted", "process", ch->role, KW_END);
                        tell_custody_front();
                        return;
                }
                backoff_ms = backoff_ms < BACKOFF_MAX_MS ? backoff_ms * 2 : BACKOFF_MAX_MS;
        }
}

/* The parent: start both, restart whichever dies, stop both on a signal. */
static int supervise(const struct kw_config *cfg, const struct kw_identity *front)
{
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGHUP);
        sigaddset(&sigs, SIGCHLD);
        sigprocmask(SIG_BLOCK, &sigs, NULL);
        signal(SIGPIPE, SIG_IGN);

        front_uid = front->uid;
        int rc = child_spawn(&custody_child, START_WAIT_MS);
        if (rc != 0) {
                fprintf(stderr, "keywardd: the custody process failed to start (exit %d); see the "
                                "log line above\n", rc);
                return rc;
        }
        rc = child_spawn(&front_child, START_WAIT_MS);
        if (rc != 0) {
                fprintf(stderr, "keywardd: the front failed to start (exit %d); see the log line "
                                "above\n", rc);
                child_stop(&custody_child);
                return rc;
        }
        tell_custody_front();
        char url[300];
        snprintf(url, sizeof url, "https://%s", cfg->http.listen);
        kw_log(KW_LOG_INFO, "started", "url", url, "front_user", front->name,
               "custody_user", cfg->custody.user, "evaluation", evaluation_field(cfg), KW_END);
        for (;;) {
                /* every wake-up, and at least each second, reaps: a SIGCHLD
                 * taken while restarting the other child is not lost */
                siginfo_t si;
                struct timespec second = { 1, 0 };
                int sig = sigtimedwait(&sigs, &si, &second);
                if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP)
                        break;
                int st;
                pid_t pid;
                while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
                        struct child *ch = pid == custody_child.pid ? &custody_child
                                         : pid == front_child.pid   ? &front_child
                                                                    : NULL;
                        if (ch == NULL)
                                continue;
                        ch->pid = -1;
                        char how[48];
                        describe_exit(st, how);
                        kw_log(KW_LOG_ERROR, "process_died", "process", ch->role, "how", how, KW_END);
                        child_restart(ch, &sigs);
                }
        }
        kw_log(KW_LOG_INFO, "stopping", KW_END);
        child_stop(&front_child);     /* finishes its requests */
        child_stop(&custody_child);   /* flushes the audit queue */
        return 0;
}

/* ------------------------------------------------------------ the front */

/* Standalone and not root (a unit's User=): this must be the [front] user,
 * the only uid the custody process admits then.  Root becomes it below. */
static kw_result check_standalone_user(const struct kw_config *cfg, const struct kw_identity *me)
{
        if (me->change)
                return KW_OK;
        struct kw_identity want;
        KW_TRY(kw_identity_lookup(cfg->front.user, &want));
        if (want.uid != me->uid) {
                kw_err_set_detail("keywardd --front runs as %s (uid %u) but [front] user is %s "
                                  "(uid %u), the only user the custody process admits",
                                  me->name, (unsigned)me->uid, want.name, (unsigned)want.uid);
                KW_BAIL(KW_ERR_CONFIG);
        }
        return KW_OK;
}

static int front_main(struct kw_config *cfg, int ready_fd, int standalone)
{
        kw_log_setup((enum kw_log_level)kw_log_level_parse(cfg->log.level), "front");
        if (standalone)
                warn_evaluation(cfg);
        else
                prctl(PR_SET_PDEATHSIG, SIGTERM);   /* never outlive the parent */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        signal(SIGPIPE, SIG_IGN);

        struct kw_identity me;
        kw_result r = kw_identity_resolve(cfg->front.user, &me);
        if (r.code == 0 && standalone)
                r = check_standalone_user(cfg, &me);
        if (r.code != 0) {
                fprintf(stderr, "keywardd: %s\n", kw_err_detail());
                return 2;
        }
        kw_caps_drop_bounding();   /* before any thread exists */
        if ((cfg->ekm.azure_ekm_enable && kw_route_ekm_setup(cfg).code != 0) ||
            kw_route_xks_setup(cfg).code != 0) {
                fprintf(stderr, "keywardd: %s\n", kw_err_detail());
                return 2;
        }
        kw_route_attest_setup(cfg);
        struct kw_front front = { .cfg = cfg };
        struct kw_admin_info *info = NULL;
        if (kw_admin_info_load(cfg, &info).code != 0) {
                fprintf(stderr, "keywardd: out of memory\n");
                return 3;
        }
        front.info = info;
        r = kw_cc_new(cfg->custody.socket_path, (unsigned)cfg->custody.connections,
                      (unsigned)cfg->custody.timeout_ms, &front.cc);
        /* the log writer thread: after the bounding set is dropped (a new
         * thread inherits its creator's), before CivetWeb's threads; from
         * here on a request thread never writes to stderr itself (log.h) */
        if (r.code == 0 && kw_log_writer_start().code != 0) {
                kw_log(KW_LOG_ERROR, "startup_failed", "step", "log_writer", "error", "internal",
                       "message", "cannot start the log writer thread", KW_END);
                return 3;
        }
        /* the listeners and the TLS key, with the privileges they may need;
         * requests that come meanwhile wait for the custody pool */
        if (r.code == 0) {
                kw_cc_pause(front.cc);
                r = kw_http_start(cfg, build_routes(cfg), &front, &front.http);
        }
        if (r.code != 0) {
                kw_log(KW_LOG_ERROR, "startup_failed", "step", "https", "error", kw_err_name(r.code),
                       "message", kw_err_detail()[0] ? kw_err_detail() : kw_strerror(r.code), KW_END);
                return 3;
        }
        kw_config_wipe_secrets(cfg);   /* the TLS key is loaded; SigV4 keys are custody's */
        r = kw_privs_drop(&me);
        if (r.code == 0)
                r = kw_process_harden();
        if (r.code == 0)
                r = kw_sandbox_enter(KW_SANDBOX_FRONT,
                                     (enum kw_sandbox_mode)kw_sandbox_mode_parse(cfg->sandbox.seccomp));
        if (r.code != 0) {
                kw_log(KW_LOG_ERROR, "startup_failed", "step", "sandbox", "error", kw_err_name(r.code),
                       "message", kw_err_detail(), KW_END);
                kw_http_stop(front.http);
                return 3;
        }
        kw_cc_resume(front.cc);
        char url[300], admin_url[300];
        snprintf(url, sizeof url, "https://%s", cfg->http.listen);
        snprintf(admin_url, sizeof admin_url, "https://%s",
                 admin_split(cfg) ? cfg->admin.listen : cfg->http.listen);
        kw_log(KW_LOG_INFO, "ready", "url", url, "admin_url", cfg->admin.enable ? admin_url : NULL,
               "version", KEYWARD_VERSION, "user", me.name, "sandbox", cfg->sandbox.seccomp,
               "evaluation", evaluation_field(cfg), KW_END);
        if (ready_fd >= 0) {
                ssize_t w = write(ready_fd, "1", 1);
                (void)w;
                close(ready_fd);
        }
        if (standalone && kw_sd_notify_ready().code != 0)
                kw_log(KW_LOG_ERROR, "notify_failed", "message", kw_err_detail(), KW_END);
        int sig = 0;
        sigwait(&set, &sig);
        kw_http_stop(front.http);       /* waits for the requests in progress */
        kw_cc_free(front.cc);
        kw_admin_info_free(info);
        kw_log_writer_stop();           /* their lines, and every other, written */
        return 0;
}

/* ------------------------------------------------------------------ main */

static void console_user(char out[96])
{
        uid_t uid = getuid();
        struct passwd *pw = getpwuid(uid);
        const char *sudo = getenv("SUDO_USER");
        snprintf(out, 96, "uid=%u(%s)%s%s", (unsigned)uid, pw ? pw->pw_name : "?",
                 sudo && sudo[0] ? " sudo_user=" : "", sudo && sudo[0] ? sudo : "");
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "check-config", no_argument, NULL, 'k' },
                { "init", no_argument, NULL, 'I' },
                { "recover-admin", no_argument, NULL, 'R' },
                { "db-export", required_argument, NULL, 'E' },
                { "db-import", required_argument, NULL, 'M' },
                { "custody", no_argument, NULL, 'C' },
                { "front", no_argument, NULL, 'F' },
                { "ready-fd", required_argument, NULL, 'r' },
                { "control-fd", required_argument, NULL, 'x' },
                { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        int check_only = 0, init = 0, recover = 0, custody = 0, front = 0, ready_fd = -1,
            control_fd = -1, o;
        const char *db_export = NULL, *db_import = NULL;
        while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
                switch (o) {
                case 'c': config_path = optarg; break;
                case 'k': check_only = 1; break;
                case 'I': init = 1; break;
                case 'R': recover = 1; break;
                case 'E': db_export = optarg; break;
                case 'M': db_import = optarg; break;
                case 'C': custody = 1; break;
                case 'F': front = 1; break;
                case 'r': ready_fd = atoi(optarg); break;
                case 'x': control_fd = atoi(optarg); break;
                case 'V': printf("keywardd %s\n", KEYWARD_VERSION); return 0;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind != argc ||
            check_only + init + recover + custody + front + (db_export != NULL) + (db_import != NULL) > 1) {
                usage(stderr);
                return 2;
        }
        const char *path = config_path;
        if (path == NULL && access(KW_CONFIG_DEFAULT_PATH, F_OK) == 0)
                path = config_path = KW_CONFIG_DEFAULT_PATH;
        struct kw_config *cfg = NULL;
        kw_result r = kw_config_load(path, NULL, &cfg);
        if (r.code != 0) {
                fprintf(stderr, "keywardd: %s\n", kw_err_detail()[0] ? kw_err_detail() : kw_strerror(r.code));
                return 2;
        }
        int rc;
        if (custody) {
                /* no peer until the parent names the front; standalone,
                 * any process of the [front] user */
                struct kw_custody_start st = { .ready_fd = ready_fd, .control_fd = control_fd,
                                               .front_pid = 0, .front_uid = (uid_t)-1,
                                               .standalone = ready_fd < 0 && control_fd < 0 };
                if (st.standalone) {
                        /* the process's name in its lines, as kw_custody_main sets it */
                        kw_log_setup((enum kw_log_level)kw_log_level_parse(cfg->log.level), "custody");
                        warn_evaluation(cfg);
                }
                rc = kw_custody_main(cfg, &st);
        } else if (front) {
                rc = front_main(cfg, ready_fd, ready_fd < 0);
        } else if (init) {
                /* the database's directory is the data volume's: never made here */
                rc = check_db_dir(cfg) != 0 ? 2 : kw_custody_init(cfg);
        } else if (db_export != NULL) {
                rc = kw_custody_db_export(cfg, db_export);
        } else if (db_import != NULL) {
                /* SQLCipher: the database's directory is the data volume's */
                int pg = cfg->db.engine != NULL && strcmp(cfg->db.engine, "postgresql") == 0;
                rc = !pg && check_db_dir(cfg) != 0 ? 2 : kw_custody_db_import(cfg, db_import);
        } else if (recover) {
                char who[96];
                console_user(who);
                rc = kw_custody_recover_admin(cfg, who);
        } else {
                /* the parent keeps no secret */
                kw_config_wipe_secrets(cfg);
                rc = 0;
                if (check_files(cfg) != 0 || check_db_dir(cfg) != 0 ||
                    (cfg->ekm.azure_ekm_enable && kw_route_ekm_setup(cfg).code != 0) ||
                    kw_route_xks_setup(cfg).code != 0) {
                        if (kw_err_detail()[0] != '\0')
                                fprintf(stderr, "keywardd: %s\n", kw_err_detail());
                        rc = 2;
                }
                struct kw_identity cid, fid;
                if (rc == 0 && (kw_identity_resolve(cfg->custody.user, &cid).code != 0 ||
                                kw_identity_resolve(cfg->front.user, &fid).code != 0)) {
                        fprintf(stderr, "keywardd: %s\n", kw_err_detail());
                        rc = 2;
                }
                if (rc == 0 && check_not_front_readable(cfg, &fid) != 0)
                        rc = 2;
                if (rc == 0 && check_only) {
                        printf("keywardd: configuration OK (%s)\n", cfg->source);
                } else if (rc == 0) {
                        kw_log_setup((enum kw_log_level)kw_log_level_parse(cfg->log.level), "parent");
                        warn_evaluation(cfg);
                        if (!cid.change)
                                kw_log(KW_LOG_WARN, "single_user",
                                       "message", "not started as root: the front and the custody "
                                                  "process both run as this user, so the front's "
                                                  "sandbox is what keeps it from the key store's "
                                                  "files; start as root for separate users",
                                       "user", cid.name, KW_END);
                        if (cfg->ekm.azure_ekm_disable_client_auth)
                                kw_log(KW_LOG_WARN, "insecure_setting",
                                       "message", "azure_ekm_disable_client_auth is set: EKM "
                                                  "requests are NOT authenticated; use this for "
                                                  "tests only", KW_END);
                        rc = prepare_socket_dir(cfg, &cid, &fid) != 0 ? 3 : supervise(cfg, &fid);
                }
        }
        kw_config_free(cfg);
        return rc;
}
